// A version compared with the current text, from the server's diff hunks
// (GET …/snapshots/{id}/diff: equal + delete spell the version, equal +
// insert the current text). Long unchanged runs fold to a few lines of
// context, so a one-word change in a long document is easy to find.

import { h } from './dom.js'

const CONTEXT_LINES = 3
const MIN_FOLDED_LINES = 4

/** @typedef {{ op: 'equal' | 'delete' | 'insert', text: string }} Hunk */

/** @param {Hunk[]} hunks the version's text */
export function versionText (hunks) {
  return hunks.filter((hunk) => hunk.op !== 'insert').map((hunk) => hunk.text).join('')
}

/** @param {Hunk[]} hunks */
export function hasChanges (hunks) {
  return hunks.some((hunk) => hunk.op !== 'equal')
}

/**
 * The version's text with what changed since marked: <del> what the version
 * has and the current text does not, <ins> what was added since.
 * @param {Hunk[]} hunks
 */
export function renderChanges (hunks) {
  return hunks.flatMap((hunk, index) => {
    if (hunk.op === 'delete') return [h('del', { title: 'In this version; removed since' }, hunk.text)]
    if (hunk.op === 'insert') return [h('ins', { title: 'Added since this version' }, hunk.text)]
    return foldUnchanged(hunk.text, index === 0, index === hunks.length - 1)
  })
}

/**
 * @param {string} text an unchanged run
 * @param {boolean} isFirst nothing precedes it: no leading context to keep
 * @param {boolean} isLast nothing follows it: no trailing context to keep
 * @returns {(string | HTMLElement)[]}
 */
function foldUnchanged (text, isFirst, isLast) {
  const lines = text.split('\n')
  // lines[0] ends the line a change is on, lines.at(-1) starts the next one.
  const headEnd = isFirst ? 0 : CONTEXT_LINES + 1
  const tailStart = isLast ? lines.length : lines.length - CONTEXT_LINES - 1
  if (tailStart - headEnd < MIN_FOLDED_LINES) return [text]
  const head = headEnd > 0 ? lines.slice(0, headEnd).join('\n') + '\n' : ''
  const tail = lines.slice(tailStart).join('\n')
  const hidden = lines.slice(headEnd, tailStart).join('\n') + (tailStart < lines.length ? '\n' : '')
  const count = tailStart - headEnd
  const fold = h('button', {
    type: 'button',
    class: 'diff-fold',
    title: 'Show the unchanged text',
    onclick: () => fold.replaceWith(hidden)
  }, `⋯ ${count} unchanged lines`)
  return [head, fold, tail].filter((part) => part !== '')
}
