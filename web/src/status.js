// Connection status: connecting → connected ⇄ reconnecting, offline when the
// browser says so, closed when the server refused us for good.
//
// Edits made while not connected stay in the page's Y.Doc; on reconnect the
// y-websocket sync (step 1/step 2 both ways) sends exactly what the server
// lacks. This module counts them and tells the person so.

/** @typedef {'connecting' | 'connected' | 'reconnecting' | 'offline' | 'closed'} State */

const LABELS = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  closed: 'Disconnected'
}

// Close codes (README, "WebSocket close codes") the server uses to say "don't come back".
/** @type {Record<number, string | undefined>} */
const CLOSE_MESSAGES = {
  4401: 'You are not signed in for this document: open it with a link that has a valid token.',
  4403: 'You do not have access to this document.',
  4404: 'This is not a valid document name.',
  4410: 'This document was deleted.'
}

export class ConnectionStatus {
  /**
   * @param {import('y-websocket').WebsocketProvider} provider
   * @param {HTMLElement} badge
   * @param {import('./notice.js').Notice} notice
   */
  constructor (provider, badge, notice) {
    this.provider = provider
    this.badge = badge
    this.notice = notice
    /** @type {State} */
    this.state = 'connecting'
    this.hasSynced = false
    this.offlineEdits = 0
    /** @type {string} */
    this.closedMessage = ''

    provider.on('status', ({ status }) => {
      if (this.state === 'offline' || this.state === 'closed') return
      if (status !== 'connected') this._set(this.hasSynced ? 'reconnecting' : 'connecting')
    })
    provider.on('sync', (isSynced) => {
      if (!isSynced) return
      const sent = this.offlineEdits
      this.hasSynced = true
      this.offlineEdits = 0
      this._set('connected')
      if (sent > 0) {
        this.notice.show(`Back online: ${describeEdits(sent)} made while disconnected ${sent === 1 ? 'is' : 'are'} synced.`, 'ok', 6000)
      }
    })
    provider.on('closed', ({ code, reason }) => {
      this.closedMessage = CLOSE_MESSAGES[code] ?? `The server closed the connection (${code}${reason ? ': ' + reason : ''}).`
      this._set('closed')
    })
    provider.doc.on('update', (_update, origin) => {
      if (origin !== provider && !provider.synced) {
        this.offlineEdits++
        this._render()
      }
    })
    // The browser knows it is offline before any socket times out: stop retrying
    // then, and reconnect the moment it is back.
    window.addEventListener('offline', () => {
      if (this.state === 'closed') return
      provider.disconnect()
      this._set('offline')
    })
    window.addEventListener('online', () => {
      if (this.state !== 'offline') return
      this._set(this.hasSynced ? 'reconnecting' : 'connecting')
      provider.connect()
    })
    window.addEventListener('beforeunload', (event) => {
      // Unsynced edits live only in this page: leaving now would lose them.
      if (this.offlineEdits > 0 && this.state !== 'closed') event.preventDefault()
    })
    if (!navigator.onLine) {
      provider.disconnect()
      this.state = 'offline'
    }
    this._render()
  }

  /** @param {State} state */
  _set (state) {
    this.state = state
    this._render()
  }

  _render () {
    this.badge.dataset.state = this.state
    const label = /** @type {HTMLElement} */ (this.badge.querySelector('.status-label'))
    label.textContent = LABELS[this.state]
    const edits = this.offlineEdits
    const kept = edits > 0
      ? ` Your ${describeEdits(edits)} ${edits === 1 ? 'is' : 'are'} kept in this page and will sync when the connection is back — keep this tab open.`
      : ' Edits you make are kept in this page and will sync when the connection is back.'
    if (this.state === 'offline') this.notice.show('You are offline.' + kept, 'warn')
    else if (this.state === 'reconnecting') this.notice.show('Connection lost; reconnecting.' + kept, 'warn')
    else if (this.state === 'closed') this.notice.show(this.closedMessage, 'error')
    else this.notice.hide('warn')
  }
}

/** @param {number} count */
function describeEdits (count) {
  return count === 1 ? '1 edit' : `${count} edits`
}
