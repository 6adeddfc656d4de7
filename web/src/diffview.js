// A version compared with the current text, from the server's diff hunks
// (GET …/snapshots/{id}/diff: equal + delete spell the version, equal +
// insert the current text).
//
// The server's diff is character-minimal (restore needs that); people read
// words and lines. So before display the hunks get diff-match-patch's semantic
// cleanup (no tiny coincidental equalities; edits slid to line and word
// boundaries) and every change is widened to whole words. Long unchanged runs
// fold to a few lines of context, so a one-word change in a long document is
// easy to find.

import DiffMatchPatch from 'diff-match-patch'

import { h } from './dom.js'

const CONTEXT_LINES = 3
const MIN_FOLDED_LINES = 4

/** @typedef {{ op: 'equal' | 'delete' | 'insert', text: string, authors?: (string | null)[] }} Hunk */

/** @param {Hunk[]} hunks the version's text */
export function versionText (hunks) {
  return hunks.filter((hunk) => hunk.op !== 'insert').map((hunk) => hunk.text).join('')
}

/** @param {Hunk[]} hunks */
export function hasChanges (hunks) {
  return hunks.some((hunk) => hunk.op !== 'equal')
}

const OPS = { equal: DiffMatchPatch.DIFF_EQUAL, delete: DiffMatchPatch.DIFF_DELETE, insert: DiffMatchPatch.DIFF_INSERT }
const dmp = new DiffMatchPatch()

/**
 * The same two texts, told in whole words and lines.
 * @param {Hunk[]} hunks
 * @returns {Hunk[]}
 */
export function readableHunks (hunks) {
  // diff-match-patch 1.0.5's `new Diff(op, text)` returns exactly this [op, text] pair.
  const diffs = hunks.map((hunk) => /** @type {DiffMatchPatch.Diff} */ ([OPS[hunk.op], hunk.text]))
  dmp.diff_cleanupSemantic(diffs)
  /** @type {({ equal: string } | { del: string, ins: string })[]} */
  const runs = []
  for (const [op, text] of diffs) {
    const last = runs.at(-1)
    if (op === DiffMatchPatch.DIFF_EQUAL) runs.push({ equal: text })
    else if (last && 'del' in last) last[op === DiffMatchPatch.DIFF_DELETE ? 'del' : 'ins'] += text
    else runs.push(op === DiffMatchPatch.DIFF_DELETE ? { del: text, ins: '' } : { del: '', ins: text })
  }
  runs.forEach((run, index) => {
    if (!('del' in run)) return
    const before = runs[index - 1]
    const after = runs[index + 1]
    if (before && 'equal' in before && (isWordChar(run.del[0]) || isWordChar(run.ins[0]))) {
      const word = before.equal.slice(wordStartBefore(before.equal))
      before.equal = before.equal.slice(0, before.equal.length - word.length)
      run.del = word + run.del
      run.ins = word + run.ins
    }
    if (after && 'equal' in after && (isWordChar(run.del.at(-1)) || isWordChar(run.ins.at(-1)))) {
      const word = after.equal.slice(0, wordEndAfter(after.equal))
      after.equal = after.equal.slice(word.length)
      run.del += word
      run.ins += word
    }
  })
  /** @type {Hunk[]} */
  const readable = []
  for (const run of runs) {
    const pieces = 'equal' in run ? [['equal', run.equal]] : [['delete', run.del], ['insert', run.ins]]
    for (const [op, text] of pieces) {
      if (!text) continue
      const last = readable.at(-1)
      if (last && last.op === op) last.text += text
      else readable.push({ op: /** @type {Hunk['op']} */ (op), text })
    }
  }
  return readable
}

const WORD_CHAR = /[\p{L}\p{N}_]/u
/** @param {string | undefined} char */
const isWordChar = (char) => char !== undefined && WORD_CHAR.test(char)
/** @param {string} text where the word `text` ends with starts */
function wordStartBefore (text) {
  let start = text.length
  while (start > 0 && isWordChar(text[start - 1])) start--
  return start
}
/** @param {string} text where the word `text` starts with ends */
function wordEndAfter (text) {
  let end = 0
  while (end < text.length && isWordChar(text[end])) end++
  return end
}

/**
 * The version's text with what changed since marked: <del> what the version
 * has and the current text does not, <ins> what was added since.
 * @param {Hunk[]} hunks
 */
export function renderChanges (hunks) {
  hunks = readableHunks(hunks)
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
