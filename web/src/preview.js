// The rendered Markdown pane. Other people's text is rendered, so marked's
// HTML output always goes through DOMPurify before it reaches the page.
// Rendering is debounced and skipped while the pane is hidden, so a large
// document costs nothing until someone looks at it.

import DOMPurify from 'dompurify'
import { marked } from 'marked'

const RENDER_DELAY_MS = 250

/** @param {string} markdown */
export function renderMarkdown (markdown) {
  const html = /** @type {string} */ (marked.parse(markdown, { async: false, gfm: true }))
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true } })
}

// Links in the preview open in a new tab and leak no referrer / opener.
DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.getAttribute('href')) {
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer')
  }
})

export class MarkdownPreview {
  /** @param {HTMLElement} pane @param {import('yjs').Text} ytext */
  constructor (pane, ytext) {
    this.pane = pane
    this.ytext = ytext
    this._timer = 0
    this._isStale = true
    ytext.observe(() => {
      this._isStale = true
      if (this.isVisible) this._schedule()
    })
  }

  get isVisible () {
    return !this.pane.hidden
  }

  /** @param {boolean} visible */
  setVisible (visible) {
    this.pane.hidden = !visible
    if (visible && this._isStale) this.render()
  }

  _schedule () {
    clearTimeout(this._timer)
    this._timer = window.setTimeout(() => this.render(), RENDER_DELAY_MS)
  }

  render () {
    clearTimeout(this._timer)
    this._isStale = false
    const scroll = this.pane.scrollTop
    this.pane.innerHTML = renderMarkdown(this.ytext.toString()) // sanitised above
    if (!this.pane.hasChildNodes()) {
      this.pane.append(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'Nothing to preview yet.' }))
    }
    this.pane.scrollTop = scroll
  }
}
