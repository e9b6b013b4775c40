// Drives tus-js-client (the browser's transfer engine) under Node against a running server.
// Usage: node tus_js_client.mjs <endpoint> <file> <mode> <work dir>
// mode: plain | with-creation | parallel | resume. Prints one JSON line describing what happened.
import fs from 'node:fs'
import path from 'node:path'
import { Upload, FileUrlStorage } from 'tus-js-client'

const [endpoint, file, mode, workDir] = process.argv.slice(2)
const data = fs.readFileSync(file)
const MIB = 1024 * 1024

function options (extra) {
  return {
    endpoint,
    chunkSize: 2 * MIB,
    retryDelays: [0, 100, 300, 1000, 2000],
    metadata: { bucket: 'tusjs', filename: `${mode}.bin`, filetype: 'application/octet-stream' },
    ...extra,
  }
}

function run (upload) {
  return new Promise((resolve, reject) => {
    upload.options.onSuccess = () => resolve(upload.url)
    upload.options.onError = reject
    upload.start()
  })
}

async function resume () {
  const urlStorage = new FileUrlStorage(path.join(workDir, 'tus-urls.json'))
  const shared = { chunkSize: MIB, urlStorage, storeFingerprintForResuming: true, removeFingerprintOnSuccess: true }
  const first = new Upload(data, options(shared))
  const abortedAt = await new Promise((resolve, reject) => {
    first.options.onError = reject
    first.options.onSuccess = () => reject(new Error('finished before it could be aborted'))
    first.options.onChunkComplete = (chunk, accepted, total) => {
      if (accepted >= total / 2) first.abort().then(() => resolve(accepted))
    }
    first.start()
  })
  let firstAccepted = null
  const second = new Upload(data, options({
    ...shared,
    onChunkComplete: (chunk, accepted) => { if (firstAccepted === null) firstAccepted = accepted },
  }))
  const previous = await second.findPreviousUploads()
  if (previous.length !== 1) throw new Error(`expected one stored upload, found ${previous.length}`)
  second.resumeFromPreviousUpload(previous[0])
  const url = await run(second)
  return { url, firstUrl: first.url, abortedAt, resumedFrom: firstAccepted - MIB }
}

async function main () {
  if (mode === 'resume') return resume()
  const extra = {
    plain: {},
    'with-creation': { uploadDataDuringCreation: true },
    parallel: { parallelUploads: 4, chunkSize: Infinity }, // each part in one PATCH, as by default
  }[mode]
  if (!extra) throw new Error(`unknown mode ${mode}`)
  const upload = new Upload(data, options(extra))
  return { url: await run(upload) }
}

main().then(
  (result) => { console.log(JSON.stringify(result)); process.exit(0) },
  (error) => { console.error(String(error && error.stack ? error.stack : error)); process.exit(1) },
)
