// Everyone else's cursor and selection in the editor, in their colour with
// their name, and this editor's own selection published as the `cursor` field
// of its awareness state (y-codemirror.next's format, which every y-codemirror
// client reads).
//
// This replaces y-codemirror.next's remote-selections plugin (same fields, same
// `cm-ySelection*` classes), for two reasons:
// - a name and a colour are what a stranger's client says they are: they are
//   made safe (identity.js safeUser) before they are painted, so a colour such
//   as `red;background:url(…)` never reaches a style, and a name is text;
// - the page's Content-Security-Policy refuses inline style attributes, which
//   the upstream caret sets with setAttribute('style', …). Colours are set here
//   through the CSSOM (a style property, or CodeMirror's `style` attribute
//   decorations, which it applies as `style.cssText`), which the policy allows.

import { Annotation } from '@codemirror/state'
import { Decoration, EditorView, ViewPlugin, WidgetType } from '@codemirror/view'
import * as Y from 'yjs'

import { h } from './dom.js'
import { DEFAULT_COLOR, makeUser, safeUser } from './identity.js'

/** @typedef {import('y-protocols/awareness').Awareness} Awareness */

const ANONYMOUS = makeUser('Anonymous', DEFAULT_COLOR)

/** Marks the transactions that only redraw the cursors after an awareness change. */
const cursorsChanged = Annotation.define()

class CaretWidget extends WidgetType {
  /** @param {string} color a checked `#rrggbb` @param {string} name a checked name */
  constructor (color, name) {
    super()
    this.color = color
    this.name = name
  }

  toDOM () {
    // U+2060 (word joiner) keeps the caret from breaking the line around it.
    return h('span', { class: 'cm-ySelectionCaret', style: { backgroundColor: this.color, borderColor: this.color } },
      '\u2060', h('div', { class: 'cm-ySelectionCaretDot' }), '\u2060',
      h('div', { class: 'cm-ySelectionInfo' }, this.name), '\u2060')
  }

  /** @override @param {CaretWidget} other */
  eq (other) {
    return other.color === this.color && other.name === this.name
  }

  /** @override */
  get estimatedHeight () {
    return -1
  }

  /** @override */
  ignoreEvent () {
    return true
  }
}

/**
 * @param {import('yjs').Text} ytext the text the editor shows
 * @param {Awareness} awareness
 */
export function remoteCursors (ytext, awareness) {
  const plugin = ViewPlugin.fromClass(class {
    /** @param {EditorView} view */
    constructor (view) {
      this.decorations = Decoration.none
      /** @param {{ added: number[], updated: number[], removed: number[] }} changes */
      this.onChange = ({ added, updated, removed }) => {
        if ([...added, ...updated, ...removed].some((id) => id !== awareness.clientID)) {
          view.dispatch({ annotations: [cursorsChanged.of(true)] })
        }
      }
      awareness.on('change', this.onChange)
    }

    destroy () {
      awareness.off('change', this.onChange)
    }

    /** @param {import('@codemirror/view').ViewUpdate} update */
    update (update) {
      publishSelection(update, ytext, awareness)
      this.decorations = othersSelections(update.view, ytext, awareness)
    }
  }, { decorations: (plugin) => plugin.decorations })
  return [plugin, cursorTheme]
}

/**
 * Put this editor's selection in its awareness state whenever it has the focus
 * (when the focus goes, the last one stays, as with y-codemirror.next).
 * @param {import('@codemirror/view').ViewUpdate} update
 * @param {import('yjs').Text} ytext
 * @param {Awareness} awareness
 */
function publishSelection (update, ytext, awareness) {
  const local = awareness.getLocalState()
  if (local == null || !update.view.hasFocus || !update.view.dom.ownerDocument.hasFocus()) return
  const { anchor, head } = update.state.selection.main
  const anchorPosition = Y.createRelativePositionFromTypeIndex(ytext, anchor)
  const headPosition = Y.createRelativePositionFromTypeIndex(ytext, head)
  const current = local.cursor
  if (current == null ||
      !Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.anchor), anchorPosition) ||
      !Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.head), headPosition)) {
    awareness.setLocalStateField('cursor', { anchor: anchorPosition, head: headPosition })
  }
}

/**
 * @param {EditorView} view
 * @param {import('yjs').Text} ytext
 * @param {Awareness} awareness
 */
function othersSelections (view, ytext, awareness) {
  const ydoc = /** @type {import('yjs').Doc} */ (ytext.doc)
  const { doc } = view.state
  /** @type {import('@codemirror/state').Range<Decoration>[]} */
  const decorations = []
  awareness.getStates().forEach((state, clientId) => {
    if (clientId === awareness.clientID) return
    const cursor = state.cursor
    if (cursor == null || cursor.anchor == null || cursor.head == null) return
    const anchor = absolute(cursor.anchor, ydoc)
    const head = absolute(cursor.head, ydoc)
    if (anchor == null || head == null || anchor.type !== ytext || head.type !== ytext) return
    if (anchor.index > doc.length || head.index > doc.length) return // not yet in this view
    const user = safeUser(state.user) ?? ANONYMOUS
    const tint = { style: `background-color: ${user.colorLight}` } // a checked #rrggbb33
    const from = Math.min(anchor.index, head.index)
    const to = Math.max(anchor.index, head.index)
    const fromLine = doc.lineAt(from)
    const toLine = doc.lineAt(to)
    if (fromLine.number === toLine.number) {
      if (from < to) decorations.push(Decoration.mark({ class: 'cm-ySelection', attributes: tint }).range(from, to))
    } else {
      if (from < fromLine.to) decorations.push(Decoration.mark({ class: 'cm-ySelection', attributes: tint }).range(from, fromLine.to))
      if (toLine.from < to) decorations.push(Decoration.mark({ class: 'cm-ySelection', attributes: tint }).range(toLine.from, to))
      for (let number = fromLine.number + 1; number < toLine.number; number++) {
        const lineStart = doc.line(number).from
        decorations.push(Decoration.line({ attributes: { ...tint, class: 'cm-yLineSelection' } }).range(lineStart))
      }
    }
    decorations.push(Decoration.widget({
      // Outside the selection, so the caret sits where that person types.
      side: head.index - anchor.index > 0 ? -1 : 1,
      widget: new CaretWidget(user.color, user.name)
    }).range(head.index))
  })
  return Decoration.set(decorations, true)
}

/**
 * A relative position (JSON, from someone's awareness state) as an index, or
 * null when it is malformed or names content this document does not have.
 * @param {unknown} json
 * @param {import('yjs').Doc} ydoc
 */
function absolute (json, ydoc) {
  try {
    return Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), ydoc)
  } catch {
    return null
  }
}

// Remote cursors always carry their owner's name (y-codemirror.next shows it on
// hover only); the label sits above the line, so the editor leaves room above
// the first one.
const cursorTheme = EditorView.baseTheme({
  '.cm-yLineSelection': { padding: '0', margin: '0px 2px 0px 4px' },
  '.cm-ySelectionCaret': {
    position: 'relative',
    borderLeft: '2px solid black',
    borderRight: '0',
    marginLeft: '-1px',
    marginRight: '-1px',
    boxSizing: 'border-box',
    display: 'inline'
  },
  '.cm-ySelectionCaretDot': { display: 'none' },
  '.cm-ySelectionInfo': {
    position: 'absolute',
    top: '-1.4em',
    left: '-1px',
    zIndex: '101',
    padding: '0 5px',
    borderRadius: '4px 4px 4px 0',
    backgroundColor: 'inherit',
    color: 'white',
    fontFamily: 'var(--font-ui)',
    fontSize: '11px',
    fontStyle: 'normal',
    fontWeight: '600',
    lineHeight: '1.35',
    whiteSpace: 'nowrap',
    userSelect: 'none'
  }
})
