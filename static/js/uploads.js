// Drag-and-drop and picked uploads through tus-js-client (static/vendor/tus.min.js): it does the
// chunking, retries and resuming; this module only queues, shows progress and asks about conflicts.
const tus = window.tus
const zone = document.getElementById('dropzone')
const MAX_PARALLEL = 3
const CHUNK = 8 * 1024 * 1024
const bucket = zone.dataset.bucket
const prefix = zone.dataset.prefix
const endpoint = new URL(zone.dataset.endpoint, window.location.href).href
const panel = document.getElementById('uploads')
const list = document.getElementById('upload-list')
const template = document.getElementById('upload-template')
const items = []
// A signed-in page proves its requests are its own (the API refuses cookie writes without it).
const csrfToken = () => document.querySelector('meta[name=csrf-token]').content

// --- collecting files: picked, dropped, and dropped folders -----------------------------------
// (A page for someone who may only read has no pickers: the drop zone still says so if files are dropped.)
document.getElementById('file-input')?.addEventListener('change', (event) => {
  addFiles([...event.target.files].map((file) => ({ file, path: file.name })))
  event.target.value = ''
})
document.getElementById('folder-input')?.addEventListener('change', (event) => {
  addFiles([...event.target.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })))
  event.target.value = ''
})

let dragDepth = 0
zone.addEventListener('dragenter', (event) => { event.preventDefault(); dragDepth++; zone.classList.add('dragging') })
zone.addEventListener('dragover', (event) => { event.preventDefault() })
zone.addEventListener('dragleave', () => { if (--dragDepth <= 0) { dragDepth = 0; zone.classList.remove('dragging') } })
zone.addEventListener('drop', async (event) => {
  event.preventDefault()
  dragDepth = 0
  zone.classList.remove('dragging')
  addFiles(await droppedFiles(event.dataTransfer))
})

async function droppedFiles (transfer) {
  const entries = [...(transfer.items || [])].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry())
  if (entries.length && entries.every(Boolean)) {
    const found = []
    for (const entry of entries) await walk(entry, '', found)
    return found
  }
  return [...transfer.files].map((file) => ({ file, path: file.name }))
}

async function walk (entry, parent, found) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject))
    found.push({ file, path: parent + entry.name })
  } else if (entry.isDirectory) {
    const reader = entry.createReader()
    let batch
    do { // readEntries answers in batches until it answers none
      batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject))
      for (const child of batch) await walk(child, parent + entry.name + '/', found)
    } while (batch.length)
  }
}

// --- the queue ----------------------------------------------------------------------------------
function addFiles (picked) {
  if (!picked.length) return
  panel.hidden = false
  for (const { file, path } of picked) {
    const item = makeItem(file, prefix + path.replace(/^\/+/, ''))
    items.push(item)
    checkConflict(item)
  }
  pump()
}

function makeItem (file, key) {
  const node = template.content.firstElementChild.cloneNode(true)
  node.dataset.key = key
  node.querySelector('.upload-name').textContent = key
  list.append(node)
  const item = { file, key, node, state: 'queued', upload: null, ready: false, sent: 0, samples: [] }
  node.querySelector('[data-testid=pause]').addEventListener('click', () => pause(item))
  node.querySelector('[data-testid=resume]').addEventListener('click', () => resume(item))
  node.querySelector('[data-testid=retry]').addEventListener('click', () => resume(item))
  node.querySelector('[data-testid=cancel]').addEventListener('click', () => cancel(item))
  for (const choice of ['replace', 'skip', 'keep-both']) {
    node.querySelector(`[data-testid=conflict-${choice}]`).addEventListener('click', () => decide(item, choice))
  }
  render(item, 'Waiting')
  return item
}

let conflictPolicy = null // a choice made "for every clash" on this page

async function existing (key) {
  // A listing by prefix answers 200 whether or not the key exists: no 404 in the console.
  const url = `${zone.dataset.listUrl}?prefix=${encodeURIComponent(key)}&limit=1`
  const response = await fetch(url, { headers: { Accept: 'application/json' } })
  const body = response.ok ? await response.json() : { data: [] }
  return body.data.length && body.data[0].key === key ? body.data[0] : null
}

async function checkConflict (item) {
  let found = null
  try { found = await existing(item.key) } catch { /* offline: upload, and let the server decide */ }
  if (found && conflictPolicy) return decide(item, conflictPolicy)
  if (found) {
    const when = new Date(found.created_at * 1000).toLocaleString()
    item.node.querySelector('.conflict-existing').textContent = ` (${size(found.bytes)}, ${when})`
    item.node.querySelector('.conflict').hidden = false
    render(item, 'Exists already: choose')
    return
  }
  item.ready = true
  pump()
}

async function decide (item, choice) {
  const node = item.node
  node.querySelector('.conflict').hidden = true
  if (node.querySelector('[data-testid=conflict-all]').checked) {
    conflictPolicy = choice
    // The clashes already waiting take the same answer.
    for (const other of items.filter((o) => o !== item && !o.node.querySelector('.conflict').hidden)) decide(other, choice)
  }
  if (choice === 'skip') return finish(item, 'done', 'Skipped')
  if (choice === 'keep-both') {
    // The next free name, without asking again for each "name (n)" that exists.
    let key = freeName(item.key)
    try { while (await existing(key)) key = freeName(key) } catch { /* offline: the server says if it clashes */ }
    item.key = key
    node.dataset.key = key
    node.querySelector('.upload-name').textContent = key
  }
  item.ready = true
  pump()
}

function freeName (key) {
  const slash = key.lastIndexOf('/') + 1
  const dot = key.lastIndexOf('.')
  const [stem, ext] = dot > slash ? [key.slice(0, dot), key.slice(dot)] : [key, '']
  const match = stem.match(/^(.*) \((\d+)\)$/)
  return match ? `${match[1]} (${Number(match[2]) + 1})${ext}` : `${stem} (1)${ext}`
}

function pump () {
  const running = items.filter((item) => item.state === 'uploading').length
  const waiting = items.filter((item) => item.state === 'queued' && item.ready)
  for (const item of waiting.slice(0, Math.max(0, MAX_PARALLEL - running))) start(item)
  summarize()
}

// --- one tab per file: two tabs sending the same file would fight over its session (423 after 423) ----
function takeLock (item, wait) {
  // Resolves true once this tab holds the file's lock (kept until releaseLock), false when another tab
  // holds it and `wait` is false. Without Web Locks every tab goes ahead (the server's lease decides).
  if (!navigator.locks) return Promise.resolve(true)
  const name = ['files-upload', bucket, item.key, item.file.size, item.file.lastModified].join('|')
  return new Promise((resolve) => {
    navigator.locks.request(name, { ifAvailable: !wait }, (lock) => {
      if (!lock) { resolve(false); return null }
      resolve(true)
      return new Promise((release) => { item.releaseLock = release })
    })
  })
}

function releaseLock (item) {
  if (item.releaseLock) { item.releaseLock(); item.releaseLock = null }
}

async function start (item) {
  item.state = 'uploading'
  render(item, 'Starting')
  if (!item.releaseLock && !(await takeLock(item, false))) {
    item.state = 'elsewhere'
    render(item, 'Being sent from another tab: this one waits for it')
    pump()
    await takeLock(item, true)
    if (item.state === 'cancelled') return releaseLock(item)
    const found = await existing(item.key).catch(() => null)
    if (found && found.bytes === item.file.size) {
      releaseLock(item)
      return finish(item, 'done', 'Uploaded by the other tab')
    }
    item.state = 'uploading'
    render(item, 'Starting')
  }
  item.upload = new tus.Upload(item.file, {
    endpoint,
    chunkSize: CHUNK,
    retryDelays: [0, 1000, 3000, 5000, 10000],
    // A full disk or a quota does not free itself in seconds: say so at once (Retry stays offered).
    // (tus-js-client's own rule otherwise: a 4xx is final but for 409 and 423, and offline is final.)
    onShouldRetry: (error) => {
      const status = error.originalResponse ? error.originalResponse.getStatus() : 0
      return navigator.onLine && status !== 507 && !(status >= 400 && status < 500 && ![409, 423].includes(status))
    },
    metadata: { bucket, key: item.key, filetype: item.file.type || '' },
    headers: { 'X-CSRF-Token': csrfToken() },
    // The same file dropped into another folder or bucket is another upload.
    fingerprint: (file) => Promise.resolve(['files', bucket, item.key, file.size, file.lastModified, endpoint].join('|')),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    onProgress: (sent, total) => progress(item, sent, total),
    onSuccess: () => finish(item, 'done', 'Uploaded'),
    onError: (error) => failed(item, error),
  })
  const previous = await item.upload.findPreviousUploads()
  if (previous.length) {
    item.upload.resumeFromPreviousUpload(previous[0])
    item.node.dataset.resumed = 'true'
  }
  item.upload.start()
}

function pause (item) {
  if (item.state !== 'uploading' || !item.upload) return
  item.upload.abort() // the server keeps every byte that arrived
  item.state = 'paused'
  render(item, 'Paused')
  pump()
}

function resume (item) {
  if (!['paused', 'error'].includes(item.state)) return
  if (!item.upload || (navigator.locks && !item.releaseLock)) {
    item.state = 'queued' // through start() again: it takes the tab lock, and resumes from the server
    item.ready = true
    return pump()
  }
  item.state = 'uploading'
  item.samples = []
  render(item, 'Resuming')
  item.upload.start() // asks the server for its offset first
  summarize()
}

async function cancel (item) {
  const upload = item.upload
  releaseLock(item)
  item.state = 'cancelled'
  item.node.remove()
  items.splice(items.indexOf(item), 1)
  summarize()
  if (upload) await upload.abort(true).catch(() => {}) // also frees what the server holds
  pump()
}

function failed (item, error) {
  releaseLock(item)
  item.state = 'error'
  const [message, retryable] = explain(error)
  item.retryable = retryable
  render(item, message)
  pump()
}

// What the service's error codes mean to a person, and whether trying again can help.
const EXPLAINED = {
  too_large: ['Too large: the file is bigger than this server accepts.', false],
  insufficient_storage: ['No space left on the server. Retry once space is freed.', true],
  quota_exceeded: ['Over the quota: delete files, or ask an admin to raise it, then retry.', true],
  forbidden: ['Not allowed: your account may not upload here.', false],
  unauthorized: ['Signed out. Sign in again (in another tab), then retry.', true],
  csrf_failed: ['This page has expired. Reload it and upload again.', false],
  cross_site: ['This page has expired. Reload it and upload again.', false],
  not_found: ['The bucket or this upload is gone.', false],
  invalid_key: ['This file name is not allowed.', false],
  invalid_bucket: ['This bucket name is not allowed.', false],
  precondition_failed: ['A file with this name appeared meanwhile.', false],
  too_many_sessions: ['Too many unfinished uploads: finish or discard some, then retry.', true],
  session_locked: ['Another tab or device is sending this file right now.', true],
  unavailable: ['The server is busy. Retry in a moment.', true],
}

function explain (error) {
  const response = error.originalResponse
  if (!response) {
    return [navigator.onLine ? 'The connection to the server broke. Retry.' : 'Offline: resumes when the network is back', true]
  }
  let code = ''
  try { code = JSON.parse(response.getBody() || '{}').error.code } catch { code = '' }
  if (EXPLAINED[code]) return EXPLAINED[code]
  const status = response.getStatus()
  if (status >= 500) return ['The server failed. Retry.', true]
  return [`The server refused this upload (${status}).`, false]
}

// The panel: folded away, or cleared of what is over (and gone when nothing is left in it).
const toggle = panel.querySelector('[data-testid=uploads-toggle]')
const clear = panel.querySelector('[data-testid=uploads-clear]')
toggle.addEventListener('click', () => {
  const open = toggle.getAttribute('aria-expanded') !== 'true'
  toggle.setAttribute('aria-expanded', String(open))
  toggle.textContent = open ? 'Hide list' : 'Show list'
  list.hidden = !open
})
clear.addEventListener('click', () => {
  for (const item of items.filter((other) => ['done', 'cancelled'].includes(other.state))) {
    item.node.remove()
    items.splice(items.indexOf(item), 1)
  }
  summarize()
})

function finish (item, state, label) {
  releaseLock(item)
  item.state = state
  if (state === 'done') item.sent = item.file.size
  render(item, label)
  pump()
  if (items.every((other) => ['done', 'cancelled'].includes(other.state))) refreshListing()
}

// --- unfinished uploads: ones a closed or reloaded page left, as tus-js-client remembers them ---------
const unfinishedPanel = document.getElementById('unfinished')

async function showUnfinished () {
  if (!tus.canStoreURLs) return
  const storage = tus.defaultOptions.urlStorage
  const here = (await storage.findAllUploads()).filter((entry) => entry.metadata &&
    entry.metadata.bucket === bucket && (entry.metadata.key || '').startsWith(prefix))
  for (const entry of here) {
    if (items.some((item) => item.key === entry.metadata.key)) continue // being sent from this page
    let offset = null
    try {
      const head = await fetch(entry.uploadUrl, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })
      if (head.status === 404 || head.status === 410) { await storage.removeUpload(entry.urlStorageKey); continue }
      if (head.ok) offset = Number(head.headers.get('Upload-Offset'))
    } catch { /* offline: list it all the same */ }
    addUnfinished(entry, offset)
  }
}

function addUnfinished (entry, offset) {
  const node = document.getElementById('unfinished-template').content.firstElementChild.cloneNode(true)
  const key = entry.metadata.key
  node.dataset.key = key
  node.querySelector('.upload-name').textContent = key.slice(prefix.length)
  const percent = offset !== null && entry.size ? Math.floor((offset / entry.size) * 100) : null
  const when = entry.creationTime ? new Date(entry.creationTime).toLocaleString() : ''
  node.querySelector('.unfinished-status').textContent =
    [percent === null ? '' : `${percent}% of ${size(entry.size)} sent`, when && `started ${when}`].filter(Boolean).join(' · ')
  node.querySelector('[data-testid=unfinished-pick]').addEventListener('change', (event) => {
    const [file] = event.target.files
    if (!file) return
    dropUnfinished(node)
    addFiles([{ file, path: key.slice(prefix.length) }]) // the same file resumes where it stopped
  })
  node.querySelector('[data-testid=unfinished-discard]').addEventListener('click', async () => {
    const gone = await fetch(entry.uploadUrl, {
      method: 'DELETE', headers: { 'Tus-Resumable': '1.0.0', 'X-CSRF-Token': csrfToken() },
    }).catch(() => null)
    if (!gone || !(gone.ok || gone.status === 404 || gone.status === 410)) return // kept: try again later
    await tus.defaultOptions.urlStorage.removeUpload(entry.urlStorageKey)
    dropUnfinished(node)
  })
  document.getElementById('unfinished-list').append(node)
  unfinishedPanel.hidden = false
}

function dropUnfinished (node) {
  node.remove()
  unfinishedPanel.hidden = !document.querySelector('[data-testid=unfinished-item]')
}

showUnfinished().finally(() => { zone.dataset.unfinishedReady = 'true' })

zone.dataset.ready = 'true' // for automation: drops are handled from now on

window.addEventListener('online', () => {
  for (const item of items.filter((other) => other.state === 'error')) resume(item)
})

// --- showing it -------------------------------------------------------------------------------------
function progress (item, sent, total) {
  item.sent = sent
  const now = performance.now()
  item.samples.push([now, sent])
  while (item.samples.length > 2 && now - item.samples[0][0] > 5000) item.samples.shift()
  const [t0, s0] = item.samples[0]
  const speed = now > t0 ? (sent - s0) / ((now - t0) / 1000) : 0
  const left = speed > 0 ? (total - sent) / speed : Infinity
  const stats = `${size(sent)} of ${size(total)}` + (speed > 0 ? ` · ${size(speed)}/s · ${duration(left)} left` : '')
  render(item, 'Uploading', stats)
  summarize()
}

function render (item, status, stats) {
  // Speed and time left only while bytes move: a paused, offline, failed or finished upload says how
  // far it got.
  if (stats === undefined && item.state !== 'uploading') stats = `${size(item.sent)} of ${size(item.file.size)}`
  const node = item.node
  const percent = item.file.size ? Math.floor((item.sent / item.file.size) * 100) : (item.state === 'done' ? 100 : 0)
  node.dataset.state = item.state
  const bar = node.querySelector('[data-testid=upload-progress]')
  bar.value = percent
  bar.dataset.percent = String(percent)
  bar.setAttribute('aria-label', `${item.key}: ${percent}%`)
  node.querySelector('.upload-status').textContent = status
  if (stats !== undefined) node.querySelector('.upload-stats').textContent = stats
  node.querySelector('[data-testid=pause]').hidden = item.state !== 'uploading'
  node.querySelector('[data-testid=resume]').hidden = item.state !== 'paused'
  node.querySelector('[data-testid=retry]').hidden = item.state !== 'error' || item.retryable === false
  node.querySelector('[data-testid=cancel]').hidden = item.state === 'done'
}

function summarize () {
  panel.hidden = items.length === 0
  clear.disabled = !items.some((item) => ['done', 'cancelled'].includes(item.state))
  const total = items.reduce((sum, item) => sum + item.file.size, 0)
  const sent = items.reduce((sum, item) => sum + Math.min(item.sent, item.file.size), 0)
  const done = items.filter((item) => item.state === 'done').length
  const overall = document.getElementById('uploads-overall')
  overall.value = total ? Math.floor((sent / total) * 100) : 100
  document.getElementById('uploads-summary').textContent = `${done} of ${items.length} done · ${size(sent)} of ${size(total)}`
}

async function refreshListing () {
  // Show the new files: fetch this page again and swap its listing in.
  const response = await fetch(window.location.href, { headers: { Accept: 'text/html' } })
  if (!response.ok) return
  const fresh = new DOMParser().parseFromString(await response.text(), 'text/html')
  const form = fresh.getElementById('listing-form')
  if (form) {
    document.getElementById('listing-form').replaceWith(form)
    const module = await import('./browser.js')
    module.rebind()
  }
  // What depends on the listing goes along: the bucket's usage (files, trash and versions), the pager,
  // and "Delete this empty bucket" (not empty now).
  const usage = [document.querySelector('.usage'), fresh.querySelector('.usage')]
  if (usage[0] && usage[1]) usage[0].replaceWith(usage[1])
  for (const selector of ['.pager', '.danger-zone']) {
    const now = document.querySelector(selector)
    const then = fresh.querySelector(selector)
    if (now && then) now.replaceWith(then)
    else if (now) now.remove()
    else if (then) (selector === '.pager' ? document.getElementById('listing-form') : zone).after(then)
  }
}

function size (bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${Math.round(value)} B`
}

function duration (seconds) {
  if (!Number.isFinite(seconds)) return '…'
  if (seconds < 60) return `${Math.max(1, Math.ceil(seconds))} s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`
}
