// The editor page, /d/{name}: CodeMirror 6 bound to the document's Y.Text
// `content` by y-codemirror.next, synced over y-websocket's WebsocketProvider
// at /ws/{name} — the same protocol any other Yjs client speaks.

import './style.css'

import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import { markdown, markdownLanguage } from '@codemirror/lang-markdown'
import { bracketMatching, HighlightStyle, indentOnInput, syntaxHighlighting } from '@codemirror/language'
import { highlightSelectionMatches, searchKeymap } from '@codemirror/search'
import { Compartment, EditorState } from '@codemirror/state'
import {
  drawSelection, dropCursor, EditorView, highlightActiveLine, highlightSpecialChars, keymap, placeholder
} from '@codemirror/view'
import { tags } from '@lezer/highlight'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

import { accessRole, ApiError, pageUrl, token, webSocketBase } from './api.js'
import { authorMarks, AuthorsView } from './authors.js'
import { remoteCursors } from './cursors.js'
import { byId } from './dom.js'
import { HistoryPanel } from './history.js'
import { askUser, loadUser } from './identity.js'
import { Notice } from './notice.js'
import { styleNonce } from './page.js'
import { bindPresenceBar } from './presence.js'
import { MarkdownPreview } from './preview.js'
import { ConnectionStatus } from './status.js'

const PREVIEW_KEY = 'collab.preview'

const documentName = decodeURIComponent(location.pathname.replace(/^\/d\//, ''))
document.title = `${documentName} · collab`
byId('doc-name').textContent = documentName
byId('doc-name').title = documentName
byId('home-link').setAttribute('href', pageUrl('/'))

const ydoc = new Y.Doc()
const ytext = ydoc.getText('content')
const provider = new WebsocketProvider(webSocketBase(), documentName, ydoc, {
  params: token ? { token } : {}
})
const notice = new Notice(byId('notice'))
// Kept alive by the provider's and the window's listeners it registers.
new ConnectionStatus(provider, byId('status'), notice)

// -- you ---------------------------------------------------------------------

let { user, isNew } = loadUser()
provider.awareness.setLocalStateField('user', user)
provider.on('status', ({ status }) => {
  // When we dropped, the server and the others removed our awareness state but
  // kept its clock; a re-announcement at that clock is ignored (y-protocols
  // awareness rules), so we would stay invisible until the 15 s renewal. A new
  // clock makes us (and our cursor) reappear the moment we are back.
  if (status === 'connected') provider.awareness.setLocalState(provider.awareness.getLocalState())
})
const userDialog = /** @type {HTMLDialogElement} */ (byId('user-dialog'))

async function editUser () {
  user = await askUser(userDialog, user)
  provider.awareness.setLocalStateField('user', user)
  view.focus()
}

// -- the editor --------------------------------------------------------------

// Only this person's edits: remote ones (the provider's origin) are not tracked.
const undoManager = new Y.UndoManager(ytext)

// Quiet Markdown: structure by weight and tone, the markup itself greyed.
const markdownStyle = HighlightStyle.define([
  { tag: tags.heading1, fontWeight: '700', fontSize: '1.25em' },
  { tag: tags.heading2, fontWeight: '700', fontSize: '1.1em' },
  { tag: [tags.heading3, tags.heading4, tags.heading5, tags.heading6], fontWeight: '700' },
  { tag: tags.strong, fontWeight: '700' },
  { tag: tags.emphasis, fontStyle: 'italic' },
  { tag: tags.strikethrough, textDecoration: 'line-through' },
  { tag: [tags.link, tags.url], color: '#2f5f98' },
  { tag: tags.monospace, backgroundColor: '#f0f0ec', borderRadius: '3px' },
  { tag: tags.quote, color: '#5b5f66', fontStyle: 'italic' },
  { tag: [tags.processingInstruction, tags.contentSeparator, tags.labelName], color: '#a0a3a8' }
])

// Read-only until the server says otherwise would flash; editable until a
// read-only token is known is harmless (the server refuses its edits anyway).
const editability = new Compartment()

const view = new EditorView({
  parent: byId('editor'),
  state: EditorState.create({
    doc: ytext.toString(),
    extensions: [
      highlightSpecialChars(),
      drawSelection(),
      dropCursor(),
      indentOnInput(),
      bracketMatching(),
      highlightActiveLine(),
      highlightSelectionMatches(),
      EditorView.lineWrapping,
      syntaxHighlighting(markdownStyle),
      markdown({ base: markdownLanguage }),
      keymap.of([...yUndoManagerKeymap, ...searchKeymap, ...defaultKeymap, indentWithTab]),
      // Text sync and undo from y-codemirror.next; the others' cursors from
      // cursors.js, which checks what strangers' clients say before painting it.
      yCollab(ytext, null, { undoManager }),
      remoteCursors(ytext, provider.awareness),
      authorMarks,
      editability.of([]),
      placeholder('Start writing… (Markdown)'),
      EditorView.contentAttributes.of({ 'aria-label': `Text of ${documentName}` }),
      // CodeMirror's styles go in <style> elements it creates; the page's
      // Content-Security-Policy admits them only with this response's nonce.
      EditorView.cspNonce.of(styleNonce())
    ]
  })
})

const undoButton = /** @type {HTMLButtonElement} */ (byId('undo'))
const redoButton = /** @type {HTMLButtonElement} */ (byId('redo'))
const updateUndoButtons = () => {
  undoButton.disabled = undoManager.undoStack.length === 0
  redoButton.disabled = undoManager.redoStack.length === 0
}
for (const event of /** @type {const} */ (['stack-item-added', 'stack-item-popped', 'stack-cleared'])) {
  undoManager.on(event, updateUndoButtons)
}
undoButton.addEventListener('click', () => { undoManager.undo(); view.focus() })
redoButton.addEventListener('click', () => { undoManager.redo(); view.focus() })

bindPresenceBar(byId('presence'), provider.awareness, editUser)

// -- preview and history -----------------------------------------------------

const workspace = byId('workspace')
const preview = new MarkdownPreview(byId('preview'), ytext)
const previewButton = byId('toggle-preview')
/** @param {boolean} visible */
function showPreview (visible) {
  preview.setVisible(visible)
  previewButton.setAttribute('aria-pressed', String(visible))
  workspace.classList.toggle('with-preview', visible)
  try { localStorage.setItem(PREVIEW_KEY, visible ? '1' : '0') } catch { /* storage blocked */ }
}
previewButton.addEventListener('click', () => showPreview(!preview.isVisible))
showPreview(localStorage.getItem(PREVIEW_KEY) === '1')

// Kept alive by the listeners it registers on its button and the text.
new AuthorsView({
  documentName,
  ytext,
  view: () => view,
  button: byId('toggle-authors'),
  legend: byId('author-legend'),
  notice
})

const historyButton = byId('toggle-history')
const history = new HistoryPanel({
  documentName,
  ytext,
  panel: byId('history'),
  view: byId('version-view'),
  confirmDialog: /** @type {HTMLDialogElement} */ (byId('confirm-dialog')),
  notice,
  author: () => user.name,
  onViewToggled: () => {
    historyButton.setAttribute('aria-pressed', String(history.isOpen))
    workspace.classList.toggle('with-history', history.isOpen)
    workspace.classList.toggle('viewing-version', history.selected !== null)
  }
})
historyButton.addEventListener('click', () => history.setOpen(!history.isOpen))

document.addEventListener('keydown', (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 's') {
    event.preventDefault() // "save" means "save a version" here; every keystroke is already saved
    history.focusSave()
  }
})

// -- what this token allows -------------------------------------------------

/** @param {'read' | 'write' | 'admin'} role */
function applyRole (role) {
  document.body.dataset.role = role
  byId('access').hidden = role !== 'read'
  if (role === 'read') {
    view.dispatch({ effects: editability.reconfigure([EditorState.readOnly.of(true), EditorView.editable.of(false)]) })
  }
}

accessRole().then(applyRole, (error) => {
  // 401/403: the WebSocket is refused too, and the status line explains it.
  if (!(error instanceof ApiError)) notice.show('Could not check your access; editing as usual.', 'warn', 6000)
})

if (isNew) editUser()
else view.focus()

