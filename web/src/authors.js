// Who wrote what, in the editor: the "Show authors" view colours the text by
// author from the server's blame (GET …/blame) with a legend, and every author
// gets one colour wherever they appear (the timeline, the legend, the text).
//
// The blame is of the stored document; while edits are in flight the editor
// may hold more, so a blame is painted only when its text is exactly the
// editor's, and asked again shortly after the text stops changing.
//
// Names come from strangers' clients: they are shown as text (dom.js h), never
// as markup, and colours come from our own palette, never from the server.

import { StateEffect, StateField } from '@codemirror/state'
import { Decoration, EditorView } from '@codemirror/view'

import { api, describeError, documentApi } from './api.js'
import { h } from './dom.js'
import { PALETTE, safeName } from './identity.js'

const REFRESH_DELAY_MS = 800
const RETRY_DELAY_MS = 1500

/** @typedef {{ text: string, author: string | null, name: string | null, verified: boolean | null, at: string | null }} BlameRun */
/** @typedef {{ key: string, label: string, color: string, verified: boolean }} AuthorTag */

/**
 * The same person gets the same tag everywhere: a verified author by their
 * token's subject, an unverified one by the name they announced.
 * @param {string | null} author @param {string | null} name @param {boolean | null} verified
 * @returns {AuthorTag}
 */
export function authorTag (author, name, verified) {
  if (author === null) return { key: '?', label: 'Unknown (before authors were recorded)', color: '#9ca3af', verified: false }
  const label = safeName(name || author) || author
  const key = verified ? `sub:${author}` : `name:${label}`
  let hash = 0
  for (const char of key) hash = (hash * 31 + (char.codePointAt(0) || 0)) >>> 0
  return { key, label: verified ? label : `${label} (unverified)`, color: PALETTE[hash % PALETTE.length], verified: !!verified }
}

/** @type {import('@codemirror/state').StateEffectType<import('@codemirror/view').DecorationSet>} */
const setAuthorMarks = StateEffect.define()

/** The author colouring, kept in place as the text is edited until repainted. */
/** @type {StateField<import('@codemirror/view').DecorationSet>} */
export const authorMarks = StateField.define({
  create: () => Decoration.none,
  update (marks, transaction) {
    marks = marks.map(transaction.changes)
    for (const effect of transaction.effects) {
      if (effect.is(setAuthorMarks)) marks = effect.value
    }
    return marks
  },
  provide: (field) => EditorView.decorations.from(field)
})

export class AuthorsView {
  /**
   * @param {{
   *   documentName: string,
   *   ytext: import('yjs').Text,
   *   view: () => EditorView,
   *   button: HTMLElement,
   *   legend: HTMLElement,
   *   notice: import('./notice.js').Notice
   * }} options
   */
  constructor ({ documentName, ytext, view, button, legend, notice }) {
    this.url = documentApi(documentName) + '/blame'
    this.ytext = ytext
    this.view = view
    this.button = button
    this.legend = legend
    this.notice = notice
    this.isOn = false
    this._timer = 0
    this._loading = 0
    button.addEventListener('click', () => this.setOn(!this.isOn))
    ytext.observe(() => {
      if (this.isOn) this._schedule(REFRESH_DELAY_MS)
    })
  }

  /** @param {boolean} on */
  setOn (on) {
    this.isOn = on
    this.button.setAttribute('aria-pressed', String(on))
    this.legend.hidden = !on
    clearTimeout(this._timer)
    if (on) this.refresh()
    else this.view().dispatch({ effects: setAuthorMarks.of(Decoration.none) })
  }

  /** @param {number} delayMs */
  _schedule (delayMs) {
    clearTimeout(this._timer)
    this._timer = window.setTimeout(() => this.refresh(), delayMs)
  }

  async refresh () {
    const ticket = ++this._loading
    let blame
    try {
      blame = await api(this.url)
    } catch (error) {
      this.notice.show(`Could not load the authors: ${describeError(error)}`, 'error', 8000)
      return
    }
    if (ticket !== this._loading || !this.isOn) return
    /** @type {BlameRun[]} */
    const runs = blame.text_roots.content || []
    if (runs.map((run) => run.text).join('') !== this.ytext.toString()) {
      this._schedule(RETRY_DELAY_MS) // edits not stored yet: the next blame will have them
      return
    }
    this.paint(runs)
  }

  /** @param {BlameRun[]} runs */
  paint (runs) {
    /** @type {Map<string, { tag: AuthorTag, chars: number }>} */
    const authors = new Map()
    const marks = []
    let position = 0
    for (const run of runs) {
      const tag = authorTag(run.author, run.name, run.verified)
      const end = position + run.text.length // UTF-16 units, as CodeMirror counts
      const seen = authors.get(tag.key) || { tag, chars: 0 }
      seen.chars += run.text.length
      authors.set(tag.key, seen)
      if (end > position) {
        marks.push(Decoration.mark({
          class: 'cm-author',
          attributes: {
            // Applied as style.cssText by CodeMirror, which the page's policy allows.
            style: `background-color: ${tag.color}2e; box-shadow: inset 0 -2px ${tag.color}`,
            title: run.at ? `${tag.label}, ${new Date(run.at).toLocaleString()}` : tag.label,
            'data-author': tag.key
          }
        }).range(position, end))
      }
      position = end
    }
    this.view().dispatch({ effects: setAuthorMarks.of(Decoration.set(marks)) })
    this.legend.replaceChildren(
      h('span', { class: 'legend-title' }, 'Authors:'),
      ...[...authors.values()].sort((a, b) => b.chars - a.chars).map(({ tag, chars }) =>
        h('span', { class: 'legend-item', dataset: { author: tag.key } },
          h('span', { class: 'swatch', style: { backgroundColor: tag.color }, 'aria-hidden': 'true' }),
          `${tag.label} · ${chars}`)))
  }
}
