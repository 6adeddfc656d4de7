// The document list, /: name, last edited, who is in it now; create and open.

import './style.css'

import { api, describeError, DOCUMENT_NAME, DOCUMENT_NAME_RULE, editorUrl, pageUrl, webSocketBase } from './api.js'
import { byId, h } from './dom.js'
import { safeUser } from './identity.js'
import { avatar } from './presence.js'
import { formatExact, formatWhen } from './time.js'

const REFRESH_INTERVAL_MS = 5000

/** @typedef {{ name: string, created_at: string | null, updated_at: string | null, size_bytes: number, live_connections: number, present: { name: unknown, color: unknown }[] }} DocumentSummary */

/** @type {DocumentSummary[]} */
let documents = []
const table = byId('documents')
const listError = byId('list-error')
const form = /** @type {HTMLFormElement} */ (byId('create-form'))
const nameInput = /** @type {HTMLInputElement} */ (byId('new-name'))
const message = byId('create-message')

byId('home-link').setAttribute('href', pageUrl('/'))
byId('ws-url').textContent = webSocketBase() + '/NAME'

async function refresh () {
  try {
    documents = await api('/api/documents')
    listError.hidden = true
    render()
  } catch (error) {
    listError.textContent = `Could not load the documents: ${describeError(error)}.`
    listError.hidden = false
  }
}

function render () {
  table.replaceChildren(...(documents.length
    ? documents.map(row)
    : [h('tr', {}, h('td', { colspan: 3, class: 'muted' }, 'No documents yet: create the first one above.'))]))
}

/** @param {DocumentSummary} doc */
function row (doc) {
  return h('tr', { dataset: { name: doc.name } },
    h('td', { class: 'doc-cell' }, h('a', { href: editorUrl(doc.name) }, doc.name)),
    h('td', {}, doc.updated_at
      ? h('time', { datetime: doc.updated_at, title: formatExact(doc.updated_at) }, formatWhen(doc.updated_at))
      : h('span', { class: 'muted' }, 'not saved yet')),
    h('td', { class: 'present-cell' }, presentPeople(doc)))
}

/** @param {DocumentSummary} doc */
function presentPeople (doc) {
  // What other clients announced: a name and colour fit to show, or nothing.
  const present = doc.present.map(safeUser).filter((person) => person !== null)
  if (present.length) {
    return h('ul', { class: 'present', 'aria-label': `${present.length} here now` },
      present.map((person) => h('li', { class: 'present-person' }, avatar(person), h('span', {}, person.name))))
  }
  if (doc.live_connections) {
    // Clients that have not said who they are (not every Yjs client does).
    const count = doc.live_connections
    return h('span', { class: 'muted' }, `${count} ${count === 1 ? 'connection' : 'connections'}`)
  }
  return h('span', { class: 'muted' }, '—')
}

form.addEventListener('submit', async (event) => {
  event.preventDefault()
  const name = nameInput.value.trim()
  if (!DOCUMENT_NAME.test(name)) {
    const suggestion = name.replace(/\s+/g, '-').replace(/[^A-Za-z0-9._:-]/g, '').slice(0, 128)
    showMessage(name
      ? `“${name}” can’t be a document name: use ${DOCUMENT_NAME_RULE}.` +
        (suggestion && suggestion !== name ? ` How about “${suggestion}”?` : '')
      : 'Type a name for the new document.', 'error')
    nameInput.focus()
    return
  }
  await refresh()
  if (documents.some((doc) => doc.name === name)) {
    showMessage([`“${name}” already exists. `, h('a', { href: editorUrl(name) }, 'Open it')], 'error')
    return
  }
  location.assign(editorUrl(name))
})

nameInput.addEventListener('input', () => {
  if (message.classList.contains('error')) showMessage(`Names: ${DOCUMENT_NAME_RULE}.`, 'muted')
})

/** @param {string | (string | Node)[]} content @param {'error' | 'muted'} kind */
function showMessage (content, kind) {
  message.replaceChildren(...[content].flat())
  message.className = `form-message ${kind}`
}

refresh()
setInterval(refresh, REFRESH_INTERVAL_MS)
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') refresh()
})
