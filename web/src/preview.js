// The rendered Markdown pane. Other people's text is rendered, so marked's
// HTML output always goes through DOMPurify before it reaches the page.
// Rendering is debounced and skipped while the pane is hidden, so a large
// document costs nothing until someone looks at it.
//
// A document is a stranger's markup inside the editor's page: besides script,
// it may not restyle the page (<style>, style attributes, the page's own class
// names), show a form that posts elsewhere (phishing), or make every reader's
// browser call another site (remote images and media, which tell that site who
// reads the document, and when). Remote images come back only when the server
// allows them (COLLAB_ALLOW_REMOTE_IMAGES); the page's Content-Security-Policy
// holds the same line should anything get past this.

import DOMPurify from 'dompurify'
import { Marked } from 'marked'

import { remoteImagesAllowed } from './page.js'

const RENDER_DELAY_MS = 250

const FORBID_TAGS = [
  'style', // restyles the whole page
  'form', 'input', 'button', 'select', 'option', 'optgroup', 'textarea', 'datalist', 'output', 'dialog',
  'audio', 'video', 'source', 'track', 'picture' // remote media
]
const FORBID_ATTR = ['style', 'srcset', 'background', 'poster', 'action', 'formaction', 'form']
// The only classes a document keeps: fenced code's language (marked writes them).
const KEPT_CLASS = /^language-[\w+#-]+$/

// The browser applies the page's policy as soon as it parses markup, DOMPurify's
// inert copy included: a <style> element, a style attribute or an event handler
// attribute (onerror=…) in a document would be reported as a policy violation
// (blocked, then removed by DOMPurify) on every render. So the raw HTML in a
// document loses them before anything parses it. What these patterns miss is
// still blocked by the policy and removed by DOMPurify, and mangling a tag here
// cannot make it any less safe: DOMPurify sees the result.
const STYLE_ELEMENT = /<style\b[\s\S]*?(?:<\/style\s*>|$)/gi
// After a space, a slash or a quote: wherever the HTML parser starts an attribute.
const INLINE_CODE_ATTRIBUTE = /([\s/"'])(?:style|on[a-z]+)\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*)/gi

const markdown = new Marked({
  gfm: true,
  renderer: {
    // GFM task lists as characters: marked's default is a disabled <input>.
    checkbox ({ checked }) {
      return checked ? '☑ ' : '☐ '
    }
  },
  walkTokens (token) {
    if (token.type === 'html') token.text = token.text.replace(STYLE_ELEMENT, '').replace(INLINE_CODE_ATTRIBUTE, '$1')
  }
})

// Its own instance: the hooks below are this pane's rules, nobody else's.
const purify = DOMPurify(window)

purify.addHook('uponSanitizeAttribute', (_node, data) => {
  if (data.attrName !== 'class') return
  data.attrValue = data.attrValue.split(/\s+/).filter((name) => KEPT_CLASS.test(name)).join(' ')
  if (!data.attrValue) data.keepAttr = false
})

purify.addHook('afterSanitizeAttributes', (node) => {
  if (!(node instanceof Element)) return
  // Links open in a new tab and leak no referrer / opener.
  if (node.tagName === 'A' && node.getAttribute('href')) {
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer')
  }
  // Still in DOMPurify's inert document here, so nothing has been fetched yet.
  if (node.tagName === 'IMG' && !remoteImagesAllowed()) {
    const source = node.getAttribute('src')
    const remote = source == null ? null : remoteOrigin(source)
    if (remote) {
      node.removeAttribute('src')
      if (!node.getAttribute('alt')) node.setAttribute('alt', 'image')
      node.setAttribute('title', `Image from ${remote} not shown: this server shows images from other sites only when it allows them`)
    }
  }
})

/**
 * The origin of a URL when it is another site's (data: URLs and this site's are not).
 * @param {string} url
 */
function remoteOrigin (url) {
  try {
    const parsed = new URL(url, document.baseURI)
    if (parsed.protocol === 'data:' || parsed.origin === location.origin) return null
    return parsed.origin === 'null' ? parsed.protocol : parsed.origin
  } catch {
    return 'an unreadable address'
  }
}

/** @param {string} text */
export function renderMarkdown (text) {
  const html = /** @type {string} */ (markdown.parse(text, { async: false }))
  return purify.sanitize(html, {
    USE_PROFILES: { html: true },
    FORBID_TAGS,
    FORBID_ATTR,
    // ids and names get a `user-content-` prefix: a document cannot shadow the
    // page's own elements (DOM clobbering) or its CSS's #id rules.
    SANITIZE_NAMED_PROPS: true
  })
}

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
