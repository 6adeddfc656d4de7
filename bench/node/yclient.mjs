// One benchmark client: a real Y.Doc (and, when asked, a real Awareness) behind one
// WebSocket, speaking y-protocols exactly as the y-websocket provider does:
// on open it sends sync step 1 (and its awareness state), answers the server's
// step 1 with step 2, applies step 2 and every update, and sends every local
// change of its Doc as a sync update. For Hocuspocus every message is framed
// with the document name (a varstring) and an auth message opens the session.
//
// Measurement hooks are cheap on purpose: the (client, clock) of a relayed
// update's first struct, and the (client, clock) of each awareness entry, are
// read from the bytes before they are applied, and handed to `ctx.onUpdate` /
// `ctx.onAwareness` with one performance.now() timestamp per frame.

import WebSocket from 'ws'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

export const MESSAGE_SYNC = 0
export const MESSAGE_AWARENESS = 1
const MESSAGE_AUTH = 2
const MESSAGE_SYNC_REPLY = 4 // Hocuspocus: a sync message that must not trigger a step 1
const SYNC_STEP2 = 1
const SYNC_UPDATE = 2

/** Read a varuint at `pos` of `bytes`; returns [value, next position]. */
export function readVarUint (bytes, pos) {
  let value = 0
  let mult = 1
  for (;;) {
    const b = bytes[pos++]
    value += (b & 0x7f) * mult
    if (b < 0x80) return [value, pos]
    mult *= 128
  }
}

/**
 * Call `each(client, clock)` for every clock of every struct of a Yjs v1 update.
 * A server may merge several edits into one update (collab merges what arrives
 * in one tick), and adjacent edits of one client into one struct, so an update
 * can carry many edits. One struct of length 1 - one edit, the common case -
 * is read straight from the bytes; anything else is decoded with Yjs.
 */
export function forEachStructClock (update, each) {
  let [groups, pos] = readVarUint(update, 0)
  if (groups === 0) return
  let structs, client, clock
  ;[structs, pos] = readVarUint(update, pos)
  ;[client, pos] = readVarUint(update, pos)
  ;[clock, pos] = readVarUint(update, pos)
  // One group, one struct: an Item (info byte with content ref 4 = string) of one
  // UTF-16 unit is one edit. Other shapes fall through to the full decode.
  if (groups === 1 && structs === 1 && isOneCharString(update, pos)) {
    each(client, clock)
    return
  }
  for (const struct of Y.decodeUpdate(update).structs) {
    if (struct.constructor.name === 'Skip') continue
    for (let k = 0; k < struct.length; k++) each(struct.id.client, struct.id.clock + k)
  }
}

/** Whether the struct at `pos` is an Item holding a string of length 1. */
function isOneCharString (update, pos) {
  const info = update[pos++]
  if ((info & 0x1f) !== 4) return false // content ref 4: ContentString
  if (info & 0x80) [, pos] = readVarUint(update, readVarUint(update, pos)[1]) // origin id
  if (info & 0x40) [, pos] = readVarUint(update, readVarUint(update, pos)[1]) // right origin id
  if ((info & 0xc0) === 0) return false // no origins: parent info follows; not our edits' shape
  const [chars] = readVarUint(update, pos)
  return chars === 1
}

let nextClientId = 1

export class BenchClient {
  /**
   * @param {object} ctx  shared: { hocuspocus, urlFor(room), onUpdate?, onAwareness?, stats }
   * @param {string} room
   * @param {{awareness?: boolean, deflate?: boolean, ignoreUpdates?: boolean}} opts
   */
  constructor (ctx, room, opts = {}) {
    this.ctx = ctx
    this.room = room
    this.opts = opts
    this.doc = new Y.Doc()
    // Small, unique client ids keep the measurement keys small (see loadgen.mjs).
    this.doc.clientID = 1000 + nextClientId++
    this.text = this.doc.getText('text')
    this.awareness = opts.awareness ? new awarenessProtocol.Awareness(this.doc) : null
    this.ws = null
    this.synced = false
    this.closedByServer = null
    this.updatesIn = 0
    this._onSynced = null
    this._prefix = null
    if (ctx.hocuspocus) {
      const e = encoding.createEncoder()
      encoding.writeVarString(e, room)
      this._prefix = encoding.toUint8Array(e)
    }
    this.doc.on('update', (update, origin) => {
      if (origin === this || !this.ws || this.ws.readyState !== WebSocket.OPEN) return
      const e = this._encoder(MESSAGE_SYNC)
      syncProtocol.writeUpdate(e, update)
      this.ws.send(encoding.toUint8Array(e))
    })
    if (this.awareness) {
      this.awareness.on('update', ({ added, updated, removed }, origin) => {
        if (origin !== 'local' || !this.ws || this.ws.readyState !== WebSocket.OPEN) return
        const changed = added.concat(updated, removed)
        const e = this._encoder(MESSAGE_AWARENESS)
        encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed))
        this.ws.send(encoding.toUint8Array(e))
      })
    }
  }

  _encoder (type) {
    const e = encoding.createEncoder()
    if (this._prefix) encoding.writeUint8Array(e, this._prefix)
    encoding.writeVarUint(e, type)
    return e
  }

  /** Open the socket and do the handshake; resolves once step 2 has been applied. */
  connect (timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.room}: not synced after ${timeoutMs} ms`)), timeoutMs)
      this._onSynced = () => { clearTimeout(timer); resolve(this) }
      const ws = new WebSocket(this.ctx.urlFor(this.room), {
        // Browsers always offer permessage-deflate; `ctx.deflate` makes every client do so.
        perMessageDeflate: Boolean(this.opts.deflate ?? this.ctx.deflate),
        maxPayload: 512 * 1024 * 1024
      })
      this.ws = ws
      ws.binaryType = 'nodebuffer'
      ws.on('open', () => {
        if (this.ctx.hocuspocus) {
          const e = this._encoder(MESSAGE_AUTH)
          encoding.writeVarUint(e, 0) // token
          encoding.writeVarString(e, 'bench')
          ws.send(encoding.toUint8Array(e))
        }
        const e = this._encoder(MESSAGE_SYNC)
        syncProtocol.writeSyncStep1(e, this.doc)
        ws.send(encoding.toUint8Array(e))
        if (this.awareness && this.awareness.getLocalState() !== null) {
          const a = this._encoder(MESSAGE_AWARENESS)
          encoding.writeVarUint8Array(a, awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.doc.clientID]))
          ws.send(encoding.toUint8Array(a))
        }
      })
      ws.on('message', (data) => this._receive(data))
      ws.on('close', (code) => {
        if (!this._closing) {
          this.closedByServer = code
          this.ctx.stats.closedByServer++
          clearTimeout(timer)
          if (!this.synced) reject(new Error(`${this.room}: closed with ${code} before sync`))
        }
      })
      ws.on('error', (err) => {
        this.ctx.stats.errors++
        if (!this.synced) { clearTimeout(timer); reject(err) }
      })
    })
  }

  _receive (data) {
    const now = performance.now()
    const ctx = this.ctx
    ctx.stats.framesIn++
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.length)
    const decoder = decoding.createDecoder(bytes)
    if (this._prefix) decoding.readVarString(decoder)
    const type = decoding.readVarUint(decoder)
    if (type === MESSAGE_SYNC || type === MESSAGE_SYNC_REPLY) {
      const sub = decoding.peekVarUint(decoder)
      if (sub === SYNC_UPDATE && ctx.onUpdate) {
        const peek = decoding.clone(decoder)
        decoding.readVarUint(peek)
        forEachStructClock(decoding.readVarUint8Array(peek), (client, clock) =>
          ctx.onUpdate(this, client, clock, now))
      }
      if (sub === SYNC_UPDATE) {
        this.updatesIn++
        if (this.opts.ignoreUpdates) return // a pure sender: its own echoes need no applying
      }
      const reply = this._encoder(MESSAGE_SYNC)
      const empty = encoding.length(reply)
      syncProtocol.readSyncMessage(decoder, reply, this.doc, this)
      if (encoding.length(reply) > empty && type === MESSAGE_SYNC) this.ws.send(encoding.toUint8Array(reply))
      if (sub === SYNC_STEP2 && !this.synced) {
        this.synced = true
        this._onSynced?.()
      }
    } else if (type === MESSAGE_AWARENESS && this.awareness) {
      const payload = decoding.readVarUint8Array(decoder)
      if (ctx.onAwareness) {
        let [count, pos] = readVarUint(payload, 0)
        for (; count > 0; count--) {
          let client, clock, len
          ;[client, pos] = readVarUint(payload, pos)
          ;[clock, pos] = readVarUint(payload, pos)
          ;[len, pos] = readVarUint(payload, pos)
          pos += len
          ctx.onAwareness(this, client, clock, now)
        }
      }
      awarenessProtocol.applyAwarenessUpdate(this.awareness, payload, this)
    }
  }

  /** Send a sync update made elsewhere (pre-encoded edits of a trace). */
  sendUpdate (update) {
    const e = this._encoder(MESSAGE_SYNC)
    syncProtocol.writeUpdate(e, update)
    this.ws.send(encoding.toUint8Array(e))
  }

  /** Bytes this socket has read from the wire (after compression, if negotiated). */
  get wireBytesIn () {
    return this.ws?._socket?.bytesRead ?? 0
  }

  close () {
    this._closing = true
    this.awareness?.destroy()
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close()
  }
}

export function stateOf (client) {
  return Y.getState(client.doc.store, client.doc.clientID)
}

export { Y }
