// Page behaviour shared by every view: filter, sort, select, confirm, copy, keyboard.

const typing = (el) => el && (el.isContentEditable || ['TEXTAREA', 'SELECT'].includes(el.tagName) ||
  (el.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit'].includes(el.type)))

// A file dropped anywhere but a drop zone would make the browser open it and leave the page,
// cutting every upload in progress: outside a drop zone a dragged file shows "no drop" and a drop
// does nothing. (A drop zone's own handlers run first and take the files.)
for (const type of ['dragover', 'drop']) {
  window.addEventListener(type, (event) => {
    const types = event.dataTransfer && event.dataTransfer.types // (an array, or array-like)
    if (!types || !Array.prototype.includes.call(types, 'Files')) return
    if (event.target instanceof Element && event.target.closest('[data-testid=dropzone]')) return
    event.preventDefault()
    if (type === 'dragover') event.dataTransfer.dropEffect = 'none'
  })
}

// Times arrive in UTC; show them in the reader's own time zone (the UTC one stays as a tooltip).
export function localTimes (root = document) {
  for (const time of root.querySelectorAll('time[datetime]:not([data-local])')) {
    const moment = new Date(time.dateTime)
    if (Number.isNaN(moment.getTime())) continue
    time.title = time.textContent
    time.textContent = moment.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
    time.dataset.local = 'true'
  }
}
localTimes()

// A message goes when its reader dismisses it.
document.addEventListener('click', (event) => {
  const button = event.target.closest('[data-dismiss]')
  if (!button) return
  const flashes = button.closest('.flashes')
  button.closest('.flash').remove()
  if (flashes && !flashes.querySelector('.flash')) flashes.remove()
})

// Filter the rows of a table by name, as you type; "/" focuses the filter.
for (const input of document.querySelectorAll('[data-filter-target]')) {
  input.addEventListener('input', () => {
    const needle = input.value.trim().toLowerCase()
    const target = document.querySelector(input.dataset.filterTarget)
    let shown = 0
    for (const row of target ? target.querySelectorAll('tbody tr') : []) {
      row.hidden = needle !== '' && !(row.dataset.name || '').toLowerCase().includes(needle)
      if (!row.hidden) shown++
    }
    // Say so when nothing matches, rather than show an empty table.
    let none = document.getElementById('filter-none')
    if (!none && target) {
      none = Object.assign(document.createElement('p'), { id: 'filter-none', className: 'empty' })
      none.setAttribute('role', 'status')
      none.dataset.testid = 'filter-none'
      target.after(none)
    }
    if (none) {
      none.hidden = !(needle && shown === 0)
      none.textContent = `Nothing on this page matches “${input.value.trim()}”.`
    }
    updateSelection()
  })
}

// Sort by a column; folders stay above files. (Delegated: the listing may be swapped in anew.)
document.addEventListener('click', (event) => {
  const button = event.target.closest('table[data-sortable] th button[data-sort]')
  if (button) sortTable(button.closest('table'), button)
})

function sortTable (table, button) {
  const th = button.closest('th')
  const column = [...th.parentElement.children].indexOf(th)
  const ascending = th.getAttribute('aria-sort') !== 'ascending'
  table.querySelectorAll('th').forEach((other) => other.removeAttribute('aria-sort'))
  th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending')
  const numeric = button.dataset.sort === 'number'
  const body = table.tBodies[0]
  const rows = [...body.rows]
  rows.sort((a, b) => {
    const folder = (b.classList.contains('folder') ? 1 : 0) - (a.classList.contains('folder') ? 1 : 0)
    if (folder) return folder
    const x = a.cells[column].dataset.value
    const y = b.cells[column].dataset.value
    const order = numeric ? Number(x) - Number(y) : byCodePoint(x, y)
    return ascending ? order : -order
  })
  body.append(...rows)
}

// The server's order: names compare by code point (= UTF-8 bytes), as the listing is sorted.
function byCodePoint (x, y) {
  const a = [...x]
  const b = [...y]
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const difference = a[i].codePointAt(0) - b[i].codePointAt(0)
    if (difference) return difference
  }
  return a.length - b.length
}

// Selection and "Delete selected".
const selectAllBox = () => document.querySelector('[data-testid=select-all]')
const deleteButton = () => document.querySelector('[data-testid=delete-selected]')
const visibleBoxes = () => [...document.querySelectorAll('[data-testid=select-row]')].filter((box) => !box.closest('tr').hidden)

// The selection outlives the page: files chosen on one page stay chosen on the next (kept per
// folder in sessionStorage), and "Delete selected" or "Download selected" take them all.
const listingForm = document.getElementById('listing-form')
const selectionKey = listingForm && `files.selection:${listingForm.action}:${listingForm.elements.back.value}`
const kept = () => { try { return new Set(JSON.parse(sessionStorage.getItem(selectionKey) || '[]')) } catch { return new Set() } }
const keep = (keys) => { try { sessionStorage.setItem(selectionKey, JSON.stringify([...keys])) } catch { /* not kept */ } }
const elsewhere = () => {
  const here = new Set([...document.querySelectorAll('[data-testid=select-row]')].map((box) => box.value))
  return [...kept()].filter((key) => !here.has(key))
}

function updateSelection () {
  const deleteSelected = deleteButton() // (none for someone who may only read: they download a selection)
  const zipSelected = document.querySelector('[data-testid=zip-selected]')
  const selectAll = selectAllBox()
  if (!deleteSelected && !zipSelected) return
  const boxes = visibleBoxes()
  const chosen = boxes.filter((box) => box.checked).length
  if (selectionKey) {
    const keys = kept()
    for (const box of document.querySelectorAll('[data-testid=select-row]')) {
      if (box.checked && !box.closest('tr').hidden) keys.add(box.value)
      else keys.delete(box.value)
    }
    keep(keys)
  }
  const others = selectionKey ? elsewhere().length : 0
  const total = chosen + others
  if (deleteSelected) {
    deleteSelected.disabled = total === 0
    deleteSelected.dataset.count = String(total)
  }
  if (zipSelected) zipSelected.disabled = total === 0
  document.getElementById('selection-count').textContent =
    total ? `${total} selected` + (others ? ` (${others} on other pages)` : '') : ''
  const clear = document.querySelector('[data-testid=clear-selection]')
  if (clear) clear.hidden = total === 0
  if (selectAll) {
    selectAll.checked = chosen > 0 && chosen === boxes.length
    selectAll.indeterminate = chosen > 0 && chosen < boxes.length
  }
}

// What was chosen on other pages goes with the form, as hidden keys.
function addOtherPages (form) {
  return elsewhere().map((key) => form.appendChild(
    Object.assign(document.createElement('input'), { type: 'hidden', name: 'key', value: key })))
}
if (listingForm) {
  const stored = kept()
  for (const box of document.querySelectorAll('[data-testid=select-row]')) box.checked = stored.has(box.value)
  listingForm.addEventListener('submit', () => { // "Download selected": the page stays, and so does the selection
    const added = addOtherPages(listingForm)
    setTimeout(() => added.forEach((input) => input.remove()))
  })
}

document.addEventListener('change', (event) => {
  if (event.target.matches('[data-testid=select-all]')) {
    for (const box of visibleBoxes()) box.checked = event.target.checked
  }
  if (event.target.matches('[data-testid=select-all], [data-testid=select-row]')) updateSelection()
})
document.addEventListener('click', (event) => {
  if (!event.target.closest('[data-testid=clear-selection]')) return
  keep([])
  for (const box of document.querySelectorAll('[data-testid=select-row]')) box.checked = false
  updateSelection()
})
updateSelection()

// Any submit button with data-confirm asks first, in an accessible <dialog>.
const dialog = document.getElementById('confirm')
document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-confirm]')
  if (!button || !dialog) return
  event.preventDefault()
  const count = button.dataset.count || '1'
  document.getElementById('confirm-message').textContent = button.dataset.confirm.replace('{count}', count)
  // The answer names what it does: "Delete" unless the button says otherwise ("Revoke", "Sign out everywhere").
  dialog.querySelector('[data-testid=confirm-delete]').textContent = button.dataset.confirmLabel || 'Delete'
  dialog.returnValue = ''
  dialog.showModal()
  dialog.addEventListener('close', () => {
    if (dialog.returnValue !== 'ok') return button.focus()
    // Hidden (filtered out) rows are never deleted by accident.
    for (const box of button.form.querySelectorAll('[data-testid=select-row]')) {
      if (box.closest('tr').hidden) box.checked = false
    }
    if (button.form === listingForm) {
      addOtherPages(button.form)
      keep([]) // what is deleted is selected no more
    }
    // submit() sends no submitter: a button's own formaction ("Delete forever" in the Trash) goes by hand.
    if (button.hasAttribute('formaction')) button.form.action = button.formAction
    button.form.submit()
  }, { once: true })
})

// Copy a link.
document.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-copy]')
  if (!button) return
  try {
    await navigator.clipboard.writeText(button.dataset.copy)
    button.textContent = button.dataset.copied || 'Link copied'
  } catch {
    window.prompt(button.dataset.copied ? 'Copy this' : 'Copy this link', button.dataset.copy)
  }
})

document.addEventListener('keydown', (event) => {
  if (typing(document.activeElement) || event.ctrlKey || event.metaKey || event.altKey) return
  if (event.key === '/') {
    const filter = document.querySelector('[data-testid=filter]')
    if (filter) { event.preventDefault(); filter.focus() }
  } else if (event.key === 'Delete' && deleteButton() && !deleteButton().disabled) {
    event.preventDefault()
    deleteButton().click()
  }
})

// After the listing was swapped in anew: its selection and its times.
export function rebind () {
  updateSelection()
  localTimes()
  if (viewToggle) showGrid(wantsGrid())
  rovingStart()
}

// Grid or list, remembered: the same rows, as cards with bigger thumbnails. (The listing may be
// swapped in anew after uploads: everything below looks it up when it acts.)
const listingTable = () => document.getElementById('listing')
const viewToggle = document.querySelector('[data-testid=view-toggle]')
const wantsGrid = () => { try { return localStorage.getItem('files.view') === 'grid' } catch { return false } }
function showGrid (grid) {
  const listing = listingTable()
  if (!viewToggle) return
  viewToggle.setAttribute('aria-pressed', String(grid))
  viewToggle.textContent = grid ? 'List view' : 'Grid view'
  if (!listing) return
  listing.classList.toggle('grid', grid)
  for (const image of listing.querySelectorAll('img.thumb[data-large]')) {
    if (grid && !image.dataset.small) {
      image.dataset.small = image.src
      image.src = image.dataset.large
    }
  }
}
if (viewToggle) {
  showGrid(wantsGrid())
  viewToggle.addEventListener('click', () => {
    const grid = !wantsGrid()
    try { localStorage.setItem('files.view', grid ? 'grid' : 'list') } catch { /* private mode: not remembered */ }
    showGrid(grid)
  })
}

// The viewer: an image or video of this page opens over it; previous and next walk through the
// page's images and videos (also with the arrow keys); Escape closes it.
const viewer = document.querySelector('[data-testid=lightbox]')
let shown = -1
const viewable = () => [...document.querySelectorAll('#listing a[data-view]')].filter((link) => !link.closest('tr').hidden)
function view (index) {
  const all = viewable()
  if (!viewer || !all.length) return
  shown = (index + all.length) % all.length
  const link = all[shown]
  const media = document.createElement(link.dataset.view === 'video' ? 'video' : 'img')
  media.src = link.dataset.src
  if (link.dataset.view === 'video') media.controls = true
  else media.alt = link.textContent.trim()
  media.dataset.testid = 'lightbox-media'
  viewer.querySelector('[data-testid=lightbox-stage]').replaceChildren(media)
  viewer.querySelector('[data-testid=lightbox-name]').textContent = link.textContent.trim()
  if (!viewer.open) viewer.showModal()
}
if (viewer) {
  document.addEventListener('click', (event) => {
    const link = event.target.closest('#listing a[data-view]')
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return // a new tab: the file's page
    event.preventDefault()
    view(viewable().indexOf(link))
  })
  viewer.addEventListener('click', (event) => {
    const action = event.target.closest('[data-lightbox]')?.dataset.lightbox
    if (action === 'previous') view(shown - 1)
    else if (action === 'next') view(shown + 1)
    else if (action === 'close' || event.target === viewer) viewer.close()
  })
  viewer.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowLeft') view(shown - 1)
    else if (event.key === 'ArrowRight') view(shown + 1)
  })
  viewer.addEventListener('close', () => viewer.querySelector('[data-testid=lightbox-stage]').replaceChildren())
}

// The keyboard in the list: ↑/↓ (or k/j) move between rows, Home/End to the ends, Enter opens the
// row (an image or video in the viewer), Space selects it, Delete asks to delete the selection (or
// the row in hand, when none is selected). Rows take focus one at a time (a roving tabindex).
const listRows = () => [...document.querySelectorAll('#listing tbody tr')].filter((row) => !row.hidden)
function focusRow (row) {
  if (!row) return
  for (const other of listRows()) other.tabIndex = -1
  row.tabIndex = 0
  row.focus()
}
function rovingStart () {
  const rows = listRows()
  const current = rows.find((row) => row.getAttribute('tabindex') === '0') || rows[0]
  for (const row of rows) row.tabIndex = row === current ? 0 : -1
}
rovingStart()
document.addEventListener('keydown', (event) => {
  const row = event.target.closest && event.target.closest('#listing tbody tr')
  if (!row || event.target !== row || event.ctrlKey || event.metaKey || event.altKey) return
  const all = listRows()
  const at = all.indexOf(row)
  const moves = { ArrowDown: at + 1, j: at + 1, ArrowUp: at - 1, k: at - 1, Home: 0, End: all.length - 1 }
  const box = row.querySelector('[data-testid=select-row]')
  if (event.key in moves) {
    event.preventDefault()
    focusRow(all[Math.max(0, Math.min(all.length - 1, moves[event.key]))])
  } else if (event.key === 'Enter') {
    event.preventDefault()
    row.querySelector('td a').click()
  } else if (event.key === ' ' && box) {
    event.preventDefault()
    box.checked = !box.checked
    updateSelection()
  } else if (event.key === 'Delete' && box && deleteButton()?.disabled) {
    box.checked = true // nothing selected anywhere: the row in hand (the page-wide Delete then asks)
    updateSelection()
  }
}, true)
document.addEventListener('click', (event) => {
  const row = event.target.closest('#listing tbody tr')
  if (row && !event.target.closest('a, input, button')) focusRow(row)
})

// A row's menu: Delete asks for that file alone (the selection is set to it); Info shows the
// file's details beside the list; a menu closes when another opens or on a click elsewhere.
document.addEventListener('click', (event) => {
  const remove = event.target.closest('[data-delete-key]')
  if (remove) {
    keep([]) // that file alone, whatever was selected here or on other pages
    for (const box of visibleBoxes()) box.checked = box.value === remove.dataset.deleteKey
    updateSelection()
    remove.closest('details').open = false
    deleteButton().click()
    return
  }
  for (const menu of document.querySelectorAll('details.row-menu[open]')) {
    if (!menu.contains(event.target)) menu.open = false
  }
})

const infoPanel = document.getElementById('info-panel')
const formatBytes = (size) => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = size
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return `${unit ? value.toFixed(1) : value} ${units[unit]} (${size.toLocaleString()} bytes)`
}
document.addEventListener('click', async (event) => {
  const button = event.target.closest('[data-info]')
  if (event.target.closest('[data-info-close]') && infoPanel) infoPanel.hidden = true
  if (!button || !infoPanel) return
  button.closest('details').open = false
  const response = await fetch(button.dataset.info, { headers: { Accept: 'application/json' } })
  if (!response.ok) return
  const file = await response.json()
  infoPanel.querySelector('[data-testid=info-name]').textContent = file.key.split('/').pop()
  const fields = { key: file.key, size: formatBytes(file.bytes), mime_type: file.mime_type, sha256: file.sha256,
    created_at: new Date(file.created_at * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }),
    uploaded_by: file.uploaded_by ?? 'nobody signed in (an open service)' }
  for (const [name, value] of Object.entries(fields)) infoPanel.querySelector(`[data-field=${name}]`).textContent = value
  infoPanel.hidden = false
  infoPanel.querySelector('[data-info-close]').focus()
})
