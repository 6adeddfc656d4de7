// The activity timeline in the history panel: who edited, when, how much
// (GET …/activity: editing sessions, and versions and restores as events),
// newest first, each author in their colour; "Undo" on a session reverts just
// that session (POST …/revert {"session"}; admin), after a version of the text
// before, which the notice offers to restore.

import { api, describeError, documentApi } from './api.js'
import { authorTag } from './authors.js'
import { h } from './dom.js'
import { formatExact, formatWhen } from './time.js'

const LIMIT = 30
const VISIT_KEY = 'collab.visit.'

/** @typedef {{ kind: 'session', id: number, author: string, name: string | null, verified: boolean, origin: 'edit' | 'restore' | 'revert', start: string, end: string, inserted: number, deleted: number }} SessionEvent */
/** @typedef {{ kind: 'version', id: number, at: string, version_kind: string, label: string | null, author: string | null }} VersionEvent */

const ORIGIN_WORDS = { edit: 'edited', restore: 'restored a version', revert: 'undid changes' }

export class Timeline {
  /**
   * @param {{
   *   documentName: string,
   *   list: HTMLElement,
   *   notice: import('./notice.js').Notice,
   *   author: () => string,
   *   onReverted: (preRevertId: number) => void
   * }} options
   */
  constructor ({ documentName, list, notice, author, onReverted }) {
    this.author = author
    this.base = documentApi(documentName)
    this.list = list
    this.notice = notice
    this.onReverted = onReverted
    this._loading = 0
    // When this browser last opened the document: what changed since is summed up.
    /** @type {string | null} */
    this.lastVisit = null
    try {
      this.lastVisit = localStorage.getItem(VISIT_KEY + documentName)
      localStorage.setItem(VISIT_KEY + documentName, new Date().toISOString())
    } catch { /* storage blocked: no summary */ }
    this.sinceVisit = h('li', { class: 'since-visit' })
  }

  async refresh () {
    const ticket = ++this._loading
    let page
    try {
      page = await api(`${this.base}/activity?limit=${LIMIT}`)
    } catch (error) {
      if (ticket === this._loading) {
        this.list.replaceChildren(h('li', { class: 'muted empty' }, `No activity to show (${describeError(error)}).`))
      }
      return
    }
    if (ticket !== this._loading) return
    /** @type {(SessionEvent | VersionEvent)[]} */
    const events = page.events
    this.list.replaceChildren(...(events.length
      ? [...this._sinceLastVisit(events), ...events.map((event) => event.kind === 'session' ? this._session(event) : this._version(event))]
      : [h('li', { class: 'muted empty' }, 'No edits yet.')]))
  }

  /** "Since your last visit (…): Bob +40 −3, Carol +2." @param {(SessionEvent | VersionEvent)[]} events */
  _sinceLastVisit (events) {
    const since = this.lastVisit
    if (!since) return []
    /** @type {Map<string, { label: string, color: string, inserted: number, deleted: number }>} */
    const changes = new Map()
    for (const event of events) {
      if (event.kind !== 'session' || event.end <= since) continue
      const tag = authorTag(event.author, event.name, event.verified)
      const seen = changes.get(tag.key) || { label: tag.label, color: tag.color, inserted: 0, deleted: 0 }
      seen.inserted += event.inserted
      seen.deleted += event.deleted
      changes.set(tag.key, seen)
    }
    this.sinceVisit.replaceChildren(
      h('time', { datetime: since, title: formatExact(since) }, `Since your last visit (${formatWhen(since)}): `),
      ...(changes.size
        ? [...changes.values()].flatMap(({ label, color, inserted, deleted }, index) => [
            index ? ', ' : '',
            h('span', { class: 'diff-author' },
              h('span', { class: 'swatch', style: { backgroundColor: color }, 'aria-hidden': 'true' }),
              `${label} +${inserted} −${deleted}`)])
        : ['no changes.']))
    return [this.sinceVisit]
  }

  /** @param {SessionEvent} session */
  _session (session) {
    const tag = authorTag(session.author, session.name, session.verified)
    return h('li', { class: 'activity-item', dataset: { kind: 'session', author: tag.key, origin: session.origin } },
      h('span', { class: 'swatch', style: { backgroundColor: tag.color }, 'aria-hidden': 'true' }),
      h('span', { class: 'activity-text' },
        h('strong', {}, tag.label), ` ${ORIGIN_WORDS[session.origin] || 'edited'} `,
        h('time', { datetime: session.end, title: `${formatExact(session.start)} – ${formatExact(session.end)}` }, formatWhen(session.end)),
        h('span', { class: 'activity-counts' },
          session.inserted ? h('ins', {}, `+${session.inserted}`) : null,
          session.deleted ? h('del', {}, `−${session.deleted}`) : null)),
      session.origin === 'edit' && session.inserted
        ? h('button', { type: 'button', class: 'link undo-session', title: 'Remove the text this session added, for everyone (a version of the text before is saved first)', onclick: () => this.undo(session, tag.label) }, 'Undo')
        : null)
  }

  /** @param {VersionEvent} version */
  _version (version) {
    const what = version.version_kind === 'pre-restore' ? 'Version before a restore' : (version.label || 'Autosaved version')
    return h('li', { class: 'activity-item muted', dataset: { kind: 'version' } },
      h('span', { class: 'swatch version-mark', 'aria-hidden': 'true' }),
      h('span', { class: 'activity-text' }, what, version.author ? ` · ${version.author}` : '', ' · ',
        h('time', { datetime: version.at, title: formatExact(version.at) }, formatWhen(version.at))))
  }

  /** @param {SessionEvent} session @param {string} label */
  async undo (session, label) {
    try {
      const result = await api(`${this.base}/revert`, { method: 'POST', json: { session: session.id, name: this.author() } })
      this.notice.show(`Undid ${label}'s session: their text from it is gone for everyone.`, 'ok', 8000)
      this.onReverted(result.pre_revert_snapshot_id)
      await this.refresh()
    } catch (error) {
      this.notice.show(`Could not undo that session: ${describeError(error)}`, 'error', 8000)
    }
  }
}
