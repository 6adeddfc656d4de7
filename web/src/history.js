// The history panel: versions (time, kind, label, author), "Save version",
// a read-only comparison of a version with the current text, and restore.
//
// A restore is done by the server as new operations on the live document
// (README, "Version history"), so every open editor — this one included —
// receives the restored text over its WebSocket, like any other edit.

import { api, ApiError, describeError, documentApi } from './api.js'
import { authorTag } from './authors.js'
import { renderChanges, hasChanges, versionText } from './diffview.js'
import { h } from './dom.js'
import { formatExact, formatWhen } from './time.js'
import { Timeline } from './timeline.js'

const PAGE_SIZE = 30
const MAX_PAGE_SIZE = 500 // the API's limit
const REFRESH_INTERVAL_MS = 15000

/** @typedef {{ id: number, created_at: string, updated_at: string, kind: 'auto' | 'named' | 'pre-restore', label: string | null, author: string | null, size_bytes: number, preview: string }} Version */

/** @param {Version} version */
export function versionTitle (version) {
  if (version.kind === 'named' && version.label) return version.label
  if (version.kind === 'pre-restore') return 'Before a restore'
  return 'Autosaved'
}

const KIND_NAMES = { auto: 'automatic', named: 'named', 'pre-restore': 'before restore' }

export class HistoryPanel {
  /**
   * @param {{
   *   documentName: string,
   *   ytext: import('yjs').Text,
   *   panel: HTMLElement,
   *   view: HTMLElement,
   *   confirmDialog: HTMLDialogElement,
   *   notice: import('./notice.js').Notice,
   *   author: () => string,
   *   onViewToggled: (isOpen: boolean) => void
   * }} options
   */
  constructor ({ documentName, ytext, panel, view, confirmDialog, notice, author, onViewToggled }) {
    this.base = documentApi(documentName) + '/snapshots'
    this.panel = panel
    this.view = view
    this.confirmDialog = confirmDialog
    this.notice = notice
    this.author = author
    this.onViewToggled = onViewToggled
    /** @type {Version[]} */
    this.versions = []
    this.hasMore = false
    /** @type {Version | null} */
    this.selected = null
    this.showChanges = true
    /** @type {import('./diffview.js').Hunk[]} */
    this.hunks = []
    this._refreshTimer = 0
    this._loading = 0

    this.list = /** @type {HTMLElement} */ (panel.querySelector('.versions'))
    this.timeline = new Timeline({
      documentName,
      list: /** @type {HTMLElement} */ (panel.querySelector('.activity')),
      notice,
      author,
      onReverted: (preRevertId) => {
        this.refresh()
        this.notice.show([
          'Session undone. ',
          h('button', { type: 'button', class: 'link', onclick: () => this.undoRestore(preRevertId) }, 'Bring it back')
        ], 'ok', 20000)
      }
    })
    this.moreButton = /** @type {HTMLButtonElement} */ (panel.querySelector('.more-versions'))
    this.saveForm = /** @type {HTMLFormElement} */ (panel.querySelector('form'))
    this.labelInput = /** @type {HTMLInputElement} */ (this.saveForm.elements.namedItem('label'))
    this.viewBody = /** @type {HTMLElement} */ (view.querySelector('.version-body'))
    this.staleBar = /** @type {HTMLElement} */ (view.querySelector('.version-stale'))

    this.saveForm.addEventListener('submit', (event) => {
      event.preventDefault()
      this.save(this.labelInput.value.trim())
    })
    this.moreButton.addEventListener('click', () => this.loadMore())
    panel.querySelector('.close-history')?.addEventListener('click', () => this.setOpen(false))
    view.querySelector('.close-version')?.addEventListener('click', () => this.closeVersion())
    view.querySelector('.restore-version')?.addEventListener('click', () => this.selected && this.restore(this.selected))
    view.querySelector('.refresh-version')?.addEventListener('click', () => this.selected && this.select(this.selected))
    for (const button of view.querySelectorAll('[data-mode]')) {
      button.addEventListener('click', () => {
        this.showChanges = /** @type {HTMLElement} */ (button).dataset.mode === 'changes'
        this.renderVersion()
      })
    }
    document.addEventListener('keydown', (event) => {
      // Escape leaves the version preview (unless a dialog above it takes the key).
      if (event.key === 'Escape' && this.selected && !document.querySelector('dialog[open]')) {
        this.closeVersion()
      }
    })
    ytext.observe(() => {
      if (this.selected) this.staleBar.hidden = false
    })
  }

  get isOpen () {
    return !this.panel.hidden
  }

  /** @param {boolean} open */
  setOpen (open) {
    this.panel.hidden = !open
    clearInterval(this._refreshTimer)
    if (open) {
      this.refresh()
      this._refreshTimer = window.setInterval(() => this.refresh(), REFRESH_INTERVAL_MS)
    } else {
      this.closeVersion()
    }
    this.onViewToggled(this.isOpen)
  }

  focusSave () {
    if (!this.isOpen) this.setOpen(true)
    this.labelInput.focus()
  }

  // -- the list ------------------------------------------------------------

  async refresh () {
    this.timeline.refresh()
    const limit = Math.min(MAX_PAGE_SIZE, Math.max(PAGE_SIZE, this.versions.length))
    const page = await this._fetchPage(`?limit=${limit}`)
    if (!page) return
    this.versions = page.snapshots
    this.hasMore = page.next_before !== null
    this.renderList()
  }

  async loadMore () {
    const last = this.versions.at(-1)
    if (!last) return
    const page = await this._fetchPage(`?limit=${PAGE_SIZE}&before=${last.id}`)
    if (!page) return
    const known = new Set(this.versions.map((v) => v.id))
    this.versions.push(...page.snapshots.filter((/** @type {Version} */ v) => !known.has(v.id)))
    this.hasMore = page.next_before !== null
    this.renderList()
  }

  /** @param {string} query */
  async _fetchPage (query) {
    const ticket = ++this._loading
    try {
      const page = await api(this.base + query)
      return ticket === this._loading ? page : null // a newer load wins
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        // Nothing stored yet (nobody has typed): no versions, not an error.
        return { snapshots: [], next_before: null }
      }
      this.notice.show(`Could not load the history: ${describeError(error)}`, 'error', 8000)
      return null
    }
  }

  renderList () {
    this.list.replaceChildren(...(this.versions.length
      ? this.versions.map((version) => this._renderItem(version))
      : [h('li', { class: 'muted empty' }, 'No versions yet. Versions are saved automatically as people edit, or with “Save version”.')]))
    this.moreButton.hidden = !this.hasMore
  }

  /** @param {Version} version */
  _renderItem (version) {
    const isSelected = this.selected?.id === version.id
    return h('li', {},
      h('button', {
        type: 'button',
        class: 'version',
        'aria-current': isSelected ? 'true' : null,
        dataset: { id: String(version.id), kind: version.kind },
        onclick: () => this.select(version)
      },
      h('span', { class: 'version-line' },
        h('span', { class: 'version-label' }, versionTitle(version)),
        h('span', { class: `badge badge-${version.kind}` }, KIND_NAMES[version.kind])),
      h('span', { class: 'version-line muted' },
        h('time', { datetime: version.updated_at, title: formatExact(version.updated_at) }, formatWhen(version.updated_at)),
        version.author ? ` · ${version.author}` : null),
      version.kind !== 'named' && version.preview
        ? h('span', { class: 'version-preview' }, version.preview.slice(0, 120))
        : null))
  }

  // -- saving --------------------------------------------------------------

  /** @param {string} label */
  async save (label) {
    if (!label) {
      this.labelInput.focus()
      return
    }
    const button = /** @type {HTMLButtonElement} */ (this.saveForm.querySelector('button'))
    button.disabled = true
    try {
      const version = await api(this.base, { method: 'POST', json: { label, author: this.author() } })
      this.labelInput.value = ''
      this.notice.show(`Saved version “${version.label}”.`, 'ok', 5000)
      await this.refresh()
    } catch (error) {
      this.notice.show(`Could not save the version: ${describeError(error)}`, 'error', 8000)
    } finally {
      button.disabled = false
    }
  }

  // -- one version ---------------------------------------------------------

  /** @param {Version} version */
  async select (version) {
    this.selected = version
    this.renderList()
    this.view.hidden = false
    this.staleBar.hidden = true
    this.viewBody.replaceChildren(h('p', { class: 'muted' }, 'Loading…'))
    this._renderHeader()
    this.onViewToggled(true)
    try {
      const diff = await api(`${this.base}/${version.id}/diff?against=current`)
      if (this.selected?.id !== version.id) return
      const content = diff.text_roots.find((/** @type {{ root: string }} */ root) => root.root === 'content')
      this.hunks = content ? content.hunks : []
      this.renderVersion()
      const closeButton = /** @type {HTMLElement | null} */ (this.view.querySelector('.close-version'))
      closeButton?.focus()
    } catch (error) {
      this.viewBody.replaceChildren(h('p', { class: 'error' }, `Could not load this version: ${describeError(error)}`))
    }
  }

  _renderHeader () {
    const version = /** @type {Version} */ (this.selected)
    const title = /** @type {HTMLElement} */ (this.view.querySelector('.version-title'))
    const meta = /** @type {HTMLElement} */ (this.view.querySelector('.version-meta'))
    title.textContent = versionTitle(version)
    meta.replaceChildren(
      h('time', { datetime: version.updated_at }, formatExact(version.updated_at)),
      ` · ${KIND_NAMES[version.kind]} version`,
      version.author ? ` · by ${version.author}` : '')
  }

  renderVersion () {
    for (const button of this.view.querySelectorAll('[data-mode]')) {
      const isChanges = /** @type {HTMLElement} */ (button).dataset.mode === 'changes'
      button.setAttribute('aria-pressed', String(isChanges === this.showChanges))
    }
    const summary = /** @type {HTMLElement} */ (this.view.querySelector('.version-summary'))
    const added = this.hunks.filter((x) => x.op === 'insert').reduce((n, x) => n + x.text.length, 0)
    const removed = this.hunks.filter((x) => x.op === 'delete').reduce((n, x) => n + x.text.length, 0)
    summary.replaceChildren(...(hasChanges(this.hunks)
      ? ['Since this version: ', h('ins', {}, `${added} characters added`), ', ', h('del', {}, `${removed} removed`), '.',
          ...changedBy(this.hunks)]
      : ['This version is the same as the current text.']))
    const text = versionText(this.hunks)
    if (!text && !hasChanges(this.hunks)) {
      this.viewBody.replaceChildren(h('p', { class: 'muted' }, 'This version has no text.'))
    } else if (this.showChanges) {
      this.viewBody.replaceChildren(...renderChanges(this.hunks))
    } else {
      this.viewBody.replaceChildren(text)
    }
  }

  closeVersion () {
    if (!this.selected) return
    this.selected = null
    this.hunks = []
    this.view.hidden = true
    this.viewBody.replaceChildren()
    this.renderList()
    this.onViewToggled(this.isOpen)
  }

  /** @param {Version} version */
  async restore (version) {
    const title = versionTitle(version)
    const when = formatExact(version.updated_at)
    const isConfirmed = await confirm(this.confirmDialog, {
      title: 'Restore this version?',
      message: `The text becomes what it was in “${title}” (${when}) for everyone in the document. ` +
        'The current text is saved as a version first, so you can undo this.',
      action: 'Restore'
    })
    if (!isConfirmed) return
    try {
      const result = await api(`${this.base}/${version.id}/restore`, { method: 'POST' })
      this.closeVersion()
      await this.refresh()
      this.notice.show([
        `Restored “${title}”. `,
        h('button', { type: 'button', class: 'link', onclick: () => this.undoRestore(result.pre_restore_snapshot_id) }, 'Undo restore')
      ], 'ok', 20000)
    } catch (error) {
      this.notice.show(`Could not restore: ${describeError(error)}`, 'error', 8000)
    }
  }

  /** @param {number} preRestoreId */
  async undoRestore (preRestoreId) {
    try {
      await api(`${this.base}/${preRestoreId}/restore`, { method: 'POST' })
      this.notice.show('Restore undone: the text is back as it was before.', 'ok', 6000)
      if (this.isOpen) await this.refresh()
    } catch (error) {
      this.notice.show(`Could not undo the restore: ${describeError(error)}`, 'error', 8000)
    }
  }
}

/**
 * Ask in the page's <dialog id="confirm-dialog">; resolves true on the action.
 * @param {HTMLDialogElement} dialog
 * @param {{ title: string, message: string, action: string }} text
 */
function confirm (dialog, { title, message, action }) {
  for (const [selector, text] of [['.confirm-title', title], ['.confirm-message', message], ['.confirm-action', action]]) {
    const element = dialog.querySelector(selector)
    if (element) element.textContent = text
  }
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true })
    dialog.returnValue = ''
    dialog.showModal()
  })
}


/**
 * " Added by Alice (12), Bob (3). Removed text of Carol (4)." from the hunks' authors.
 * @param {import('./diffview.js').Hunk[]} hunks
 */
function changedBy (hunks) {
  const parts = []
  for (const [op, words] of /** @type {const} */ ([['insert', 'Added by'], ['delete', 'Removed text of']])) {
    /** @type {Map<string, { label: string, color: string, chars: number }>} */
    const counts = new Map()
    for (const hunk of hunks) {
      if (hunk.op !== op) continue
      for (const author of hunk.authors || [null]) {
        const tag = authorTag(author, null, author !== null && !author.startsWith('anonymous'))
        const seen = counts.get(tag.key) || { label: tag.label, color: tag.color, chars: 0 }
        seen.chars += hunk.text.length / Math.max(1, (hunk.authors || [null]).length)
        counts.set(tag.key, seen)
      }
    }
    if (!counts.size) continue
    parts.push(` ${words} `, ...[...counts.values()].flatMap(({ label, color, chars }, index) => [
      index ? ', ' : '',
      h('span', { class: 'diff-author' },
        h('span', { class: 'swatch', style: { backgroundColor: color }, 'aria-hidden': 'true' }),
        `${label} (${Math.round(chars)})`)
    ]), '.')
  }
  return parts
}
