// The one-line message under the toolbar: connection trouble, restores, errors.

export class Notice {
  /** @param {HTMLElement} element */
  constructor (element) {
    this.element = element
    this._timer = 0
  }

  /**
   * @param {string | Node | (string | Node)[]} content
   * @param {'ok' | 'warn' | 'error'} kind
   * @param {number} [hideAfterMs] 0: until replaced or hidden
   */
  show (content, kind, hideAfterMs = 0) {
    clearTimeout(this._timer)
    this.element.replaceChildren(...[content].flat())
    this.element.dataset.kind = kind
    this.element.hidden = false
    if (hideAfterMs) this._timer = window.setTimeout(() => this.hide(), hideAfterMs)
  }

  /** @param {'ok' | 'warn' | 'error'} [kind] only if the shown message is of this kind */
  hide (kind) {
    if (kind && this.element.dataset.kind !== kind) return
    clearTimeout(this._timer)
    this.element.hidden = true
    this.element.dataset.kind = ''
  }
}
