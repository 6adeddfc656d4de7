// A real Yjs client (yjs + y-websocket on Node, with `ws`) for tests/test_interop_node.py.
//
//   node client.mjs --server ws://127.0.0.1:PORT/ws --doc NAME [options]
//
// Connects exactly as an application would (the provider appends "/NAME" to the
// server URL), waits for `synced`, makes its edit to Y.Text "text", sets its
// presence, then waits until every expectation holds. It then prints ONE JSON
// line to stdout: {text, synced, clientId, awarenessStates} (awarenessStates: the
// states of the *other* clients it sees), stays connected for --hold-ms and, with
// --hold-stdin, until its stdin closes, and exits 0 after closing the socket.
// On timeout: a diagnostic on stderr and exit code 1 (2 for bad arguments).
//
// Options:
//   --insert TEXT            insert TEXT into Y.Text "text" once synced
//   --at N                   ...at index N (default: append at the end)
//   --insert-before-connect  make the insertion offline, before connecting
//                            (a concurrent edit the server has never seen)
//   --presence NAME          set awareness local state {user: {name: NAME}}
//   --token TOKEN            send it as ?token= (the provider's `params` option)
//   --expect TEXT            wait until the text equals TEXT
//   --expect-contains S      wait until the text contains S (repeatable)
//   --expect-presence NAME   wait until another client's user.name is NAME (repeatable)
//   --expect-cursor NAME     wait until the client named NAME shows a cursor in Y.Text "text";
//                            the result's `cursors` has {NAME: {anchor, head}} as indices,
//                            resolved by Yjs from the relative positions (repeatable)
//   --timeout-ms MS          give up after MS (default 10000)
//   --hold-ms MS             stay connected MS after printing (default 0)
//   --hold-stdin             stay connected until stdin is closed by the caller
//   --expect-closed          after the result line, wait until the provider gives up
//                            for good (its 'closed' event: a 44xx close code), print
//                            {closed: {code, reason}} and exit 0
//   --replay PATH            once synced, replay an editing trace (a gzipped JSON
//                            {startContent, txns: [{patches: [[pos, del, ins]]}]}, as in
//                            josephg/editing-traces) into Y.Text "text" at full speed: one
//                            transaction, so one update message, per trace txn, all sent
//                            without waiting (the provider writes each to the socket)
//   --replay-count N         only the first N txns of the trace (default: all)

import fs from 'node:fs'
import { parseArgs } from 'node:util'
import zlib from 'node:zlib'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const usage = (message) => {
  process.stderr.write(`client.mjs: ${message}\n`)
  process.exit(2)
}

let args
try {
  args = parseArgs({
    options: {
      server: { type: 'string' },
      doc: { type: 'string' },
      insert: { type: 'string' },
      at: { type: 'string' },
      'insert-before-connect': { type: 'boolean', default: false },
      presence: { type: 'string' },
      token: { type: 'string' },
      expect: { type: 'string' },
      'expect-contains': { type: 'string', multiple: true, default: [] },
      'expect-presence': { type: 'string', multiple: true, default: [] },
      'expect-cursor': { type: 'string', multiple: true, default: [] },
      'timeout-ms': { type: 'string', default: '10000' },
      'hold-ms': { type: 'string', default: '0' },
      'hold-stdin': { type: 'boolean', default: false },
      'expect-closed': { type: 'boolean', default: false },
      replay: { type: 'string' },
      'replay-count': { type: 'string', default: '0' }
    },
    strict: true
  }).values
} catch (err) {
  usage(err.message)
}
if (!args.server || !args.doc) usage('--server and --doc are required')

const timeoutMs = Number(args['timeout-ms'])
const holdMs = Number(args['hold-ms'])
const deadline = Date.now() + timeoutMs // one budget for connecting, syncing and converging
const log = (message) => process.stderr.write(`client.mjs [${args.doc}] ${message}\n`)
// Exit only once stdout and stderr are flushed (writes to a pipe may be asynchronous).
const exit = (code) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))

const ydoc = new Y.Doc()
const ytext = ydoc.getText('text')

const insert = () => {
  if (args.insert === undefined) return
  const index = args.at === undefined ? ytext.length : Number(args.at)
  ytext.insert(index, args.insert)
}

if (args['insert-before-connect']) insert()

const provider = new WebsocketProvider(args.server, args.doc, ydoc, {
  WebSocketPolyfill: WebSocket,
  params: args.token === undefined ? {} : { token: args.token }
})
const awareness = provider.awareness

// `event` is null when we closed the socket ourselves; anything else is worth a line.
provider.on('connection-close', (event) => {
  if (event) log(`connection closed by the server: code ${event.code} ${JSON.stringify(event.reason)}`)
})
provider.on('connection-error', (event) => log(`connection error: ${event.message ?? event}`))
let terminalClose = null // set when the provider stops reconnecting for good
provider.on('closed', (event) => { terminalClose = event })

const othersStates = () =>
  [...awareness.getStates()]
    .filter(([clientId]) => clientId !== ydoc.clientID)
    .map(([, state]) => state)

// A relative position (JSON, from an awareness state) as an index in ytext, else null.
const indexOf = (json) => {
  if (json == null) return null
  const absolute = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), ydoc)
  return absolute !== null && absolute.type === ytext ? absolute.index : null
}

const cursors = () => Object.fromEntries(othersStates()
  .filter((state) => state?.user?.name && state.cursor)
  .map((state) => [state.user.name, { anchor: indexOf(state.cursor.anchor), head: indexOf(state.cursor.head) }]))

const unmet = () => {
  const text = ytext.toString()
  const missing = []
  if (!provider.synced) missing.push('synced')
  if (args.expect !== undefined && text !== args.expect) missing.push(`text === ${JSON.stringify(args.expect)}`)
  for (const piece of args['expect-contains']) {
    if (!text.includes(piece)) missing.push(`text contains ${JSON.stringify(piece)}`)
  }
  const names = othersStates().map((state) => state?.user?.name)
  for (const name of args['expect-presence']) {
    if (!names.includes(name)) missing.push(`presence of ${JSON.stringify(name)}`)
  }
  for (const name of args['expect-cursor']) {
    if (cursors()[name]?.anchor == null) missing.push(`cursor of ${JSON.stringify(name)}`)
  }
  return missing
}

const waitFor = (condition, what) =>
  new Promise((resolve) => {
    const stop = () => {
      clearTimeout(timer)
      ydoc.off('update', check)
      awareness.off('change', check)
      provider.off('sync', check)
    }
    const check = () => {
      if (condition()) {
        stop()
        resolve()
      }
    }
    const timer = setTimeout(() => {
      stop()
      log(`timed out after ${timeoutMs} ms waiting for ${what()}`)
      log(`text is ${JSON.stringify(ytext.toString())}; others' presence ${JSON.stringify(othersStates())}`)
      exit(1)
    }, Math.max(0, deadline - Date.now()))
    ydoc.on('update', check)
    awareness.on('change', check)
    provider.on('sync', check)
    check()
  })

const closeSocket = async () => {
  const ws = provider.ws
  provider.destroy() // sends our awareness removal, then closes the socket
  if (ws && ws.readyState !== WebSocket.CLOSED) {
    await Promise.race([
      new Promise((resolve) => ws.once('close', resolve)),
      new Promise((resolve) => setTimeout(resolve, 2000))
    ])
  }
}

const replay = () => {
  if (args.replay === undefined) return
  const trace = JSON.parse(zlib.gunzipSync(fs.readFileSync(args.replay)))
  const count = Number(args['replay-count'])
  const txns = count > 0 ? trace.txns.slice(0, count) : trace.txns
  if (trace.startContent) ytext.insert(0, trace.startContent)
  for (const txn of txns) {
    ydoc.transact(() => {
      for (const [pos, del, ins] of txn.patches) {
        if (del) ytext.delete(pos, del)
        if (ins) ytext.insert(pos, ins)
      }
    })
  }
}

await waitFor(() => provider.synced, () => 'synced')
if (!args['insert-before-connect']) insert()
replay()
if (args.presence !== undefined) awareness.setLocalStateField('user', { name: args.presence })
await waitFor(() => unmet().length === 0, () => unmet().join(', '))

process.stdout.write(JSON.stringify({
  text: ytext.toString(),
  synced: provider.synced,
  clientId: ydoc.clientID,
  awarenessStates: othersStates(),
  cursors: cursors()
}) + '\n')

if (args['expect-closed']) {
  await new Promise((resolve) => {
    if (terminalClose) return resolve()
    provider.on('closed', resolve)
    setTimeout(() => {
      log(`timed out after ${timeoutMs} ms waiting for a permanent close`)
      exit(1)
    }, timeoutMs)
  })
  process.stdout.write(JSON.stringify({ closed: { code: terminalClose.code, reason: terminalClose.reason } }) + '\n')
  provider.destroy()
  exit(0)
} else {
  if (holdMs > 0) await new Promise((resolve) => setTimeout(resolve, holdMs))
  if (args['hold-stdin']) {
    process.stdin.resume()
    await new Promise((resolve) => process.stdin.once('end', resolve).once('close', resolve))
  }
  await closeSocket()
  exit(0)
}
