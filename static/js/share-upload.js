// A file request's drop zone: each file is a tus upload (tus-js-client, as the bucket pages use)
// into the shared folder. The server names it (never replacing a file); this page only sends.
const zone = document.getElementById('share-drop')
const list = document.getElementById('share-uploads')
const input = document.getElementById('share-files')

const SENTENCES = {
  quota_exceeded: 'Too much: this link (or its owner) takes no more bytes.',
  insufficient_storage: 'No space left on the server.',
  too_large: 'Too large for this server.',
  share_expired: 'This link has expired.',
  share_revoked: 'This link was withdrawn.',
  unauthorized: 'This link needs its password: reload the page.'
}

function explain (error) {
  const response = error.originalResponse
  if (!response) return 'The connection failed. Try again.'
  try {
    const code = JSON.parse(response.getBody()).error.code
    return SENTENCES[code] || `The server refused this file (${response.getStatus()}).`
  } catch { return `The server refused this file (${response.getStatus()}).` }
}

function send (file) {
  const item = document.createElement('li')
  item.className = 'upload-item'
  item.dataset.testid = 'share-upload'
  item.dataset.state = 'uploading'
  const name = document.createElement('span')
  name.className = 'upload-name'
  name.textContent = file.name
  const status = document.createElement('span')
  status.className = 'upload-status muted'
  const bar = document.createElement('progress')
  bar.max = 100
  bar.value = 0
  bar.setAttribute('aria-label', file.name)
  item.append(name, ' ', status, bar)
  list.append(item)
  const upload = new tus.Upload(file, {
    endpoint: zone.dataset.endpoint,
    chunkSize: 8 * 1024 * 1024,
    retryDelays: [0, 1000, 3000, 5000],
    metadata: { filename: file.name, filetype: file.type || '' },
    onShouldRetry: (error) => {
      const code = error.originalResponse ? error.originalResponse.getStatus() : 0
      return navigator.onLine && !(code >= 400 && code < 500 && ![409, 423].includes(code)) && code !== 507
    },
    onProgress: (sent, total) => { bar.value = total ? Math.floor(sent * 100 / total) : 100 },
    onSuccess: () => { item.dataset.state = 'done'; bar.value = 100; status.textContent = 'Sent' },
    onError: (error) => { item.dataset.state = 'error'; status.textContent = explain(error) }
  })
  upload.start()
}

function sendAll (files) { for (const file of files) send(file) }

zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('dragging') })
zone.addEventListener('dragleave', () => zone.classList.remove('dragging'))
zone.addEventListener('drop', (event) => {
  event.preventDefault()
  zone.classList.remove('dragging')
  sendAll(event.dataTransfer.files)
})
// A file dropped beside the zone must not make the browser leave the page.
window.addEventListener('dragover', (event) => event.preventDefault())
window.addEventListener('drop', (event) => event.preventDefault())
input.addEventListener('change', () => { sendAll(input.files); input.value = '' })
