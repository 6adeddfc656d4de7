// The load generator: one Node process (pinned to one core by bench/run.py) that
// opens R rooms x C clients, each a real Yjs client (yclient.mjs), drives one
// scenario and prints one JSON object per measured step on stdout.
//
//   node loadgen.mjs '<spec as JSON>'
//
// The spec says the scenario, how to reach the server (`url`: the URL prefix a
// room name is appended to; `hocuspocus`: frame messages with the name instead)
// and the server's pid, whose CPU time (user + sys, all threads) and RSS are
// read from /proc at the edges of each measurement window. Latency is measured
// on this process's clock from the moment a client makes an edit (just before
// its update is sent) to the moment each other client's socket delivers the
// relayed frame carrying it. Progress goes to stderr.

import fs from 'node:fs'
import zlib from 'node:zlib'
import { BenchClient, Y, stateOf } from './yclient.mjs'

const spec = JSON.parse(process.argv[2])
const CLK_TCK = spec.clockTicks || 100
const KEY_CLOCK = 2 ** 24 // key = clientId * 2^24 + clock (client ids are small, see yclient.mjs)

const log = (...args) => process.stderr.write(`[loadgen] ${args.join(' ')}\n`)
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
const emit = (record) => process.stdout.write(JSON.stringify(record) + '\n')

// -- /proc ---------------------------------------------------------------------

function serverCpuS () {
  const stat = fs.readFileSync(`/proc/${spec.serverPid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / CLK_TCK
}

function serverMemKb () {
  const status = fs.readFileSync(`/proc/${spec.serverPid}/status`, 'utf8')
  const field = (name) => Number((status.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm')) || [0, NaN])[1])
  return { rss: field('VmRSS'), hwm: field('VmHWM') }
}

function machineBusyS () {
  const ticks = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1, 9).map(Number)
  return (ticks.reduce((a, b) => a + b, 0) - ticks[3] - ticks[4]) / CLK_TCK
}

/** CPU of the server, of this generator and of everything else over a window. */
class CpuWindow {
  constructor () {
    this.t = performance.now()
    this.server = serverCpuS()
    this.gen = process.cpuUsage()
    this.machine = machineBusyS()
  }

  end () {
    const wall = (performance.now() - this.t) / 1000
    const server = serverCpuS() - this.server
    const g = process.cpuUsage(this.gen)
    const gen = (g.user + g.system) / 1e6
    const machine = machineBusyS() - this.machine
    return {
      wall_s: wall,
      server_cpu_s: server,
      server_cpu_util: server / wall,
      gen_cpu_util: gen / wall,
      other_cpu_util: Math.max(0, (machine - server - gen) / wall)
    }
  }
}

// -- helpers -------------------------------------------------------------------

function makeCtx () {
  return {
    hocuspocus: Boolean(spec.hocuspocus),
    deflate: Boolean(spec.deflate),
    urlFor: spec.hocuspocus ? () => spec.url : (room) => spec.url + room,
    stats: { framesIn: 0, closedByServer: 0, errors: 0 },
    onUpdate: null,
    onAwareness: null
  }
}

function percentiles (values) {
  if (values.length === 0) return { p50_ms: null, p95_ms: null, p99_ms: null, max_ms: null, samples: 0 }
  const sorted = Float64Array.from(values).sort()
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
  const round = (v) => Math.round(v * 1000) / 1000
  return { p50_ms: round(at(0.5)), p95_ms: round(at(0.95)), p99_ms: round(at(0.99)), max_ms: round(sorted[sorted.length - 1]), samples: sorted.length }
}

async function connectAll (clients, concurrency = 64) {
  let next = 0
  const worker = async () => {
    while (next < clients.length) await clients[next++].connect(spec.connectTimeoutMs || 60000)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, clients.length) }, worker))
}

async function waitFor (predicate, timeoutMs, stepMs = 5) {
  const deadline = performance.now() + timeoutMs
  while (!predicate()) {
    if (performance.now() > deadline) return false
    await sleep(stepMs)
  }
  return true
}

/** Wait until the server uses < 3 % of a core over 0.5 s (or the timeout passes). */
async function waitQuiet (timeoutS) {
  const started = performance.now()
  while (performance.now() - started < timeoutS * 1000) {
    const before = serverCpuS()
    await sleep(500)
    if (serverCpuS() - before < 0.015) return { seconds: Math.round(performance.now() - started) / 1000, quiet: true }
  }
  return { seconds: Math.round(performance.now() - started) / 1000, quiet: false }
}

function closeAll (clients) {
  for (const c of clients) c.close()
}

/** Every room's clients hold the same document (state vectors and text). */
function convergence (rooms) {
  let converged = 0
  for (const clients of rooms) {
    const sv = Buffer.from(Y.encodeStateVector(clients[0].doc)).toString('base64')
    const text = clients[0].text.toString()
    if (clients.every(c => Buffer.from(Y.encodeStateVector(c.doc)).toString('base64') === sv && c.text.toString() === text)) converged++
  }
  return { rooms_converged: converged, rooms: rooms.length }
}

// -- which sent change reached which client, and when -------------------------

/**
 * Tracks changes (an edit's update, an awareness state), each named by the
 * (client, clock) it carries, from the moment it is made to its arrival at every
 * other client. Only changes made while the window is open are measured;
 * deliveries and echoes are counted while it is open.
 */
class DeliveryTracker {
  constructor () {
    this.sent = new Map()
    this.latencies = []
    this.windowOpen = false
    this.deliveries = 0
    this.echoes = 0
    this.measured = 0
  }

  /** A change by `clientId` at `clock`, to be delivered to `receivers` others. */
  expect (clientId, clock, receivers) {
    this.sent.set(clientId * KEY_CLOCK + clock, { t: performance.now(), pending: receivers, measured: this.windowOpen })
    if (this.windowOpen) this.measured++
  }

  /** `receiver` got the change (cid, clock) at `now`. */
  deliver (receiver, cid, clock, now) {
    if (cid === receiver.doc.clientID) {
      if (this.windowOpen) this.echoes++
      return
    }
    if (this.windowOpen) this.deliveries++
    const key = cid * KEY_CLOCK + clock
    const rec = this.sent.get(key)
    if (rec === undefined) return
    if (rec.measured) this.latencies.push(now - rec.t)
    if (--rec.pending === 0) this.sent.delete(key)
  }

  pendingMeasured () {
    let n = 0
    for (const rec of this.sent.values()) if (rec.measured) n += rec.pending
    return n
  }

  /** Wait up to `drainS` for the measured changes, then the window's figures. */
  async finish (usage, drainS, receiversEach) {
    await waitFor(() => this.pendingMeasured() === 0, drainS * 1000, 10)
    return {
      achieved_rate: Math.round(this.measured / usage.wall_s),
      expected_deliveries: this.measured * receiversEach,
      missing: this.pendingMeasured(),
      ...percentiles(this.latencies),
      delivered_per_s: Math.round(this.deliveries / usage.wall_s),
      echoes_per_s: Math.round(this.echoes / usage.wall_s),
      server_cpu_us_per_delivery: this.deliveries ? Math.round(usage.server_cpu_s / this.deliveries * 1e6 * 100) / 100 : null,
      ...roundAll(usage)
    }
  }
}

// -- fan-out at an offered rate (also one step of the ramp) ---------------------

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz '

/**
 * Offer `rate` edits/s in total, round-robin over every client of every room, for
 * warmup + duration seconds; measure during `duration` only; then wait up to
 * `drain` seconds for the measured edits to arrive everywhere.
 */
async function offerEdits (ctx, rooms, rate, { warmupS, durationS, drainS }) {
  const perRoom = rooms[0].length
  const order = []
  for (let c = 0; c < perRoom; c++) for (const clients of rooms) order.push(clients[c])
  const tracker = new DeliveryTracker()
  ctx.onUpdate = (client, cid, clock, now) => tracker.deliver(client, cid, clock, now)
  const edit = (client) => {
    const clock = stateOf(client)
    const pos = Math.floor(Math.random() * (client.text.length + 1))
    tracker.expect(client.doc.clientID, clock, perRoom - 1)
    client.text.insert(pos, ALPHABET[clock % ALPHABET.length])
  }
  let cpu = null
  let usage = null
  let memAtEnd = null
  const warmupMs = warmupS * 1000
  const endMs = warmupMs + durationS * 1000
  await new Promise(resolve => {
    const start = performance.now()
    let made = 0
    const tick = () => {
      const elapsed = performance.now() - start
      if (!tracker.windowOpen && cpu === null && elapsed >= warmupMs) {
        cpu = new CpuWindow()
        tracker.windowOpen = true
      }
      if (tracker.windowOpen && elapsed >= endMs) {
        tracker.windowOpen = false
        usage = cpu.end()
        memAtEnd = serverMemKb()
        resolve()
        return
      }
      const due = Math.floor(elapsed * rate / 1000)
      while (made < due) edit(order[made++ % order.length])
      setTimeout(tick, 1)
    }
    tick()
  })
  const figures = await tracker.finish(usage, drainS, perRoom - 1)
  ctx.onUpdate = null
  return {
    offered_rate: rate,
    measured_edits: tracker.measured,
    ...figures,
    server_rss_kb: memAtEnd.rss,
    server_hwm_kb: memAtEnd.hwm,
    closed_by_server: ctx.stats.closedByServer,
    errors: ctx.stats.errors
  }
}

function roundAll (obj) {
  const out = {}
  for (const [k, v] of Object.entries(obj)) out[k] = typeof v === 'number' ? Math.round(v * 1000) / 1000 : v
  return out
}

async function openRooms (ctx, roomCount, perRoom, opts = {}) {
  const rooms = []
  for (let r = 0; r < roomCount; r++) {
    rooms.push(Array.from({ length: perRoom }, () => new BenchClient(ctx, `${spec.roomPrefix}-${r}`, opts)))
  }
  const started = performance.now()
  await connectAll(rooms.flat())
  log(`${roomCount}x${perRoom} connected and synced in ${Math.round(performance.now() - started)} ms`)
  return rooms
}

async function scenarioFanout () {
  const ctx = makeCtx()
  const rooms = await openRooms(ctx, spec.rooms, spec.clients)
  await sleep(300)
  const step = await offerEdits(ctx, rooms, spec.rate, spec)
  await sleep(200)
  emit({ ...step, ...convergence(rooms) })
  closeAll(rooms.flat())
}

async function scenarioRamp () {
  const ctx = makeCtx()
  const rooms = await openRooms(ctx, spec.rooms, spec.clients)
  await sleep(300)
  let best = null
  const judge = (step, rate) => {
    const reasons = []
    if (step.p99_ms === null || step.p99_ms >= spec.p99LimitMs) reasons.push(`p99 ${step.p99_ms} ms >= ${spec.p99LimitMs}`)
    if (step.missing > 0) reasons.push(`${step.missing} deliveries missing`)
    if (step.closed_by_server > 0) reasons.push(`${step.closed_by_server} connections closed by the server`)
    if (step.achieved_rate < 0.95 * rate) reasons.push(`generator reached only ${step.achieved_rate}/s`)
    step.passed = reasons.length === 0
    // A failure while the server had CPU to spare and others were busy is the
    // shared machine's doing, not saturation: say so.
    if (!step.passed && step.server_cpu_util < 0.8 && step.other_cpu_util > 0.3) reasons.push('disturbed: server not CPU-bound, other load high')
    step.failure = reasons.join('; ') || null
    log(`ramp ${rate}/s: p99 ${step.p99_ms} ms, missing ${step.missing}, server CPU ${step.server_cpu_util}, generator CPU ${step.gen_cpu_util}, other ${step.other_cpu_util} -> ${step.passed ? 'pass' : 'FAIL'}`)
  }
  for (const rate of spec.rates) {
    let step = await offerEdits(ctx, rooms, rate, spec)
    judge(step, rate)
    if (!step.passed && ctx.stats.closedByServer === 0) {
      // Disturbances on a shared machine come in bursts: one retry of a failed step.
      emit({ step: true, retried: true, ...step })
      await sleep(2000)
      step = await offerEdits(ctx, rooms, rate, spec)
      judge(step, rate)
    }
    emit({ step: true, ...step })
    if (!step.passed) break
    best = rate
  }
  await sleep(1000)
  emit({ saturation_rate: best, ...convergence(rooms), closed_by_server: ctx.stats.closedByServer })
  closeAll(rooms.flat())
}

// -- awareness: N clients in one room, each moving its cursor at `hz` ----------

async function scenarioAwareness () {
  const ctx = makeCtx()
  const clients = Array.from({ length: spec.clients }, (_, i) => {
    const c = new BenchClient(ctx, `${spec.roomPrefix}-0`, { awareness: true })
    c.awareness.setLocalState({ user: { name: `user ${i}`, color: '#30bced' }, cursor: { anchor: 0, head: 0 } })
    return c
  })
  await connectAll(clients)
  await sleep(500)
  const tracker = new DeliveryTracker()
  ctx.onAwareness = (client, cid, clock, now) => tracker.deliver(client, cid, clock, now)
  const move = (client) => {
    const clock = client.awareness.meta.get(client.doc.clientID).clock + 1
    tracker.expect(client.doc.clientID, clock, clients.length - 1)
    const pos = clock % 1000
    client.awareness.setLocalStateField('cursor', { anchor: pos, head: pos + 1 })
  }
  const periodMs = 1000 / spec.hz
  const timers = clients.map((c, i) => {
    const handle = { interval: null }
    handle.timeout = setTimeout(() => { handle.interval = setInterval(() => move(c), periodMs) }, (i / clients.length) * periodMs)
    return handle
  })
  await sleep(spec.warmupS * 1000)
  const cpu = new CpuWindow()
  tracker.windowOpen = true
  await sleep(spec.durationS * 1000)
  tracker.windowOpen = false
  const usage = cpu.end()
  const mem = serverMemKb()
  for (const h of timers) { clearTimeout(h.timeout); clearInterval(h.interval) }
  const figures = await tracker.finish(usage, spec.drainS, clients.length - 1)
  await sleep(200)
  // Did every client end up with every other client's final state (even if a
  // server coalesced intermediate ones)?
  let finalMissing = 0
  for (const receiver of clients) {
    for (const sender of clients) {
      if (sender === receiver) continue
      const want = sender.awareness.meta.get(sender.doc.clientID).clock
      const got = receiver.awareness.meta.get(sender.doc.clientID)?.clock
      if (got !== want) finalMissing++
    }
  }
  emit({
    offered_rate: spec.clients * spec.hz,
    measured_states: tracker.measured,
    ...figures,
    final_states_missing: finalMissing,
    server_rss_kb: mem.rss,
    server_hwm_kb: mem.hwm,
    closed_by_server: ctx.stats.closedByServer,
    errors: ctx.stats.errors
  })
  closeAll(clients)
}

// -- idle scale: many connections, mostly quiet ---------------------------------

async function scenarioIdle () {
  const ctx = makeCtx()
  await sleep(500)
  const rss0 = serverMemKb().rss
  const docChars = spec.docChars || 100
  const firsts = Array.from({ length: spec.rooms }, (_, r) => new BenchClient(ctx, `${spec.roomPrefix}-${r}`))
  const cpu0 = serverCpuS()
  const t0 = performance.now()
  await connectAll(firsts, 100)
  for (const c of firsts) c.text.insert(0, 'x'.repeat(docChars))
  const echoed = await waitFor(() => firsts.every(c => c.updatesIn > 0), 60000, 20)
  const phase1Ms = performance.now() - t0
  const phase1CpuS = serverCpuS() - cpu0
  await sleep(spec.settleS * 1000)
  const rss1 = serverMemKb().rss
  const rest = []
  for (let k = 1; k < spec.clients; k++) for (let r = 0; r < spec.rooms; r++) rest.push(new BenchClient(ctx, `${spec.roomPrefix}-${r}`))
  const cpu1 = serverCpuS()
  const t1 = performance.now()
  await connectAll(rest, 100)
  const phase2Ms = performance.now() - t1
  const phase2CpuS = serverCpuS() - cpu1
  const contentOk = rest.every(c => c.text.length === docChars)
  await sleep(spec.settleS * 1000)
  const mem = serverMemKb()
  const perConnKb = (mem.rss - rss1) / rest.length
  const perRoomKb = (rss1 - rss0) / spec.rooms - perConnKb
  await sleep((spec.holdS || 0) * 1000)
  emit({
    rooms: spec.rooms,
    connections: firsts.length + rest.length,
    doc_chars: docChars,
    rss_baseline_kb: rss0,
    rss_rooms_loaded_kb: rss1,
    rss_all_connected_kb: mem.rss,
    server_hwm_kb: mem.hwm,
    rss_per_connection_kb: Math.round(perConnKb * 100) / 100,
    rss_per_room_kb: Math.round(perRoomKb * 100) / 100,
    first_per_room_ms: Math.round(phase1Ms),
    connect_rest_ms: Math.round(phase2Ms),
    connect_all_s: Math.round((phase1Ms + phase2Ms)) / 1000,
    // the server's CPU (all its threads) while the first and the rest connected
    cpu_first_per_room_s: Math.round(phase1CpuS * 100) / 100,
    cpu_connect_rest_s: Math.round(phase2CpuS * 100) / 100,
    content_ok: contentOk && echoed,
    closed_by_server: ctx.stats.closedByServer,
    errors: ctx.stats.errors
  })
  closeAll([...firsts, ...rest])
}

// -- the editing trace ------------------------------------------------------------

function loadTrace () {
  const data = JSON.parse(zlib.gunzipSync(fs.readFileSync(spec.tracePath)))
  const count = spec.traceCount > 0 ? Math.min(spec.traceCount, data.txns.length) : data.txns.length
  let expected = data.endContent
  if (count < data.txns.length) {
    // Independent of any CRDT: plain string edits (cheap for a prefix of the trace).
    expected = data.startContent
    for (const txn of data.txns.slice(0, count)) {
      for (const [pos, del, ins] of txn.patches) expected = expected.slice(0, pos) + ins + expected.slice(pos + del)
    }
  }
  return { txns: data.txns.slice(0, count), expected }
}

async function scenarioTrace () {
  const { txns, expected } = loadTrace()
  // The writer's edits are made on a Y.Doc before the clock starts (one update per
  // trace txn, exactly what an editor would send per keystroke), so that during
  // the measurement this process only sends, relays its echoes and applies on the
  // observer: the generator must not be what limits the fastest server.
  const author = new Y.Doc()
  const authorText = author.getText('text')
  const updates = []
  author.on('update', (u) => updates.push(u))
  for (const txn of txns) {
    author.transact(() => {
      for (const [pos, del, ins] of txn.patches) {
        if (del) authorText.delete(pos, del)
        if (ins) authorText.insert(pos, ins)
      }
    })
  }
  const ctx = makeCtx()
  const room = `${spec.roomPrefix}-trace`
  const observer = new BenchClient(ctx, room)
  const writer = new BenchClient(ctx, room, { ignoreUpdates: true })
  await observer.connect()
  await writer.connect()
  const cpu = new CpuWindow()
  const started = performance.now()
  for (let i = 0; i < updates.length; i++) {
    writer.sendUpdate(updates[i])
    if ((i & 127) === 127) {
      // Behave like a real client: let the socket drain and keep reading echoes.
      const stalledAt = performance.now()
      while (writer.ws.bufferedAmount > 1 << 20) {
        if (performance.now() - stalledAt > spec.stallS * 1000) {
          throw new Error(`the server stopped reading: ${i + 1} of ${updates.length} edits sent, ` +
            `observer has ${observer.updatesIn}; nothing drained for ${spec.stallS} s`)
        }
        await sleep(1)
      }
      await new Promise(resolve => setImmediate(resolve))
    }
  }
  const sendMs = performance.now() - started
  const target = Y.getState(author.store, author.clientID)
  const arrived = await waitFor(() => Y.getState(observer.doc.store, author.clientID) === target, spec.timeoutS * 1000, 2)
  const totalMs = performance.now() - started
  const usage = cpu.end()
  const mem = serverMemKb()
  const textOk = arrived && observer.text.toString() === expected
  emit({
    edits: txns.length,
    complete: arrived,
    text_ok: textOk,
    total_s: Math.round(totalMs) / 1000,
    send_s: Math.round(sendMs) / 1000,
    edits_per_s: Math.round(txns.length / (totalMs / 1000)),
    final_state_bytes: Y.encodeStateAsUpdate(observer.doc).length,
    text_chars: expected.length,
    ...roundAll(usage),
    server_cpu_us_per_edit: Math.round(usage.server_cpu_s / txns.length * 1e6 * 100) / 100,
    server_rss_kb: mem.rss,
    server_hwm_kb: mem.hwm,
    closed_by_server: ctx.stats.closedByServer,
    errors: ctx.stats.errors
  })
  // Stay connected until every echo is in and the server has gone quiet (its
  // background writes are done): some servers drop queued writes when a room's
  // last client leaves, and the cold load after the restart should find it all.
  await waitFor(() => writer.updatesIn >= updates.length, 30000, 10)
  const quietS = await waitQuiet(spec.quietTimeoutS || 120)
  emit({ after_replay_quiet_s: quietS.seconds, after_replay_quiet: quietS.quiet })
  closeAll([writer, observer])
}

/** After a restart: connect a fresh client and time it until it holds the full text. */
async function scenarioColdLoad () {
  const { expected } = loadTrace()
  const ctx = makeCtx()
  const client = new BenchClient(ctx, `${spec.roomPrefix}-trace`)
  const started = performance.now()
  await client.connect()
  const syncedMs = performance.now() - started
  // Some servers answer step 1 before the document has loaded and send the
  // content afterwards as an update: the time that counts is until the text is there.
  const full = await waitFor(() => client.text.length === expected.length, spec.timeoutS * 1000, 1)
  const fullMs = performance.now() - started
  emit({
    synced_ms: Math.round(syncedMs * 100) / 100,
    full_text_ms: full ? Math.round(fullMs * 100) / 100 : null,
    text_ok: full && client.text.toString() === expected,
    sync_bytes: client.wireBytesIn,
    server_rss_kb: serverMemKb().rss,
    closed_by_server: ctx.stats.closedByServer
  })
  closeAll([client])
}

// -- a big document -------------------------------------------------------------

async function scenarioBigDoc () {
  const ctx = makeCtx()
  const room = `${spec.roomPrefix}-big`
  const filler = JSON.parse(zlib.gunzipSync(fs.readFileSync(spec.tracePath))).endContent
  const chunkChars = 1 << 20
  let chunk = ''
  while (chunk.length < chunkChars) chunk += filler
  chunk = chunk.slice(0, chunkChars)
  const uploader = new BenchClient(ctx, room)
  await uploader.connect()
  const t0 = performance.now()
  for (let i = 0; i < spec.megabytes; i++) {
    uploader.text.insert(uploader.text.length, chunk)
    while (uploader.ws.bufferedAmount > 8 << 20) await sleep(2)
  }
  const uploaded = await waitFor(() => uploader.updatesIn >= spec.megabytes, spec.timeoutS * 1000, 20)
  const uploadS = (performance.now() - t0) / 1000
  const expectedChars = spec.megabytes * chunkChars
  await sleep(1000)
  const before = serverMemKb()
  const record = {
    megabytes: spec.megabytes,
    upload_s: Math.round(uploadS * 1000) / 1000,
    uploaded,
    state_bytes: Y.encodeStateAsUpdate(uploader.doc).length,
    server_rss_before_join_kb: before.rss
  }
  // One fresh client that offers permessage-deflate, as browsers do.
  for (const deflate of [true, false]) {
    const c = new BenchClient(ctx, room, { deflate })
    const s = performance.now()
    try {
      await c.connect(spec.timeoutS * 1000)
      const tag = deflate ? 'deflate_offered' : 'no_deflate'
      record[`join_${tag}_s`] = Math.round(performance.now() - s) / 1000
      record[`join_${tag}_wire_bytes`] = c.wireBytesIn
      record[`join_${tag}_negotiated`] = c.ws.extensions || ''
      record[`join_${tag}_text_ok`] = c.text.length === expectedChars
    } catch (err) {
      record[`join_${deflate ? 'deflate_offered' : 'no_deflate'}_error`] = String(err.message || err)
    }
    c.close()
    await sleep(500)
  }
  // Many at once: how high does the server's memory go?
  await sleep(1000)
  const joiners = Array.from({ length: spec.joiners }, () => new BenchClient(ctx, room, { deflate: true }))
  let peak = serverMemKb().rss
  const sampler = setInterval(() => { try { peak = Math.max(peak, serverMemKb().rss) } catch {} }, 20)
  const s = performance.now()
  const outcomes = await Promise.allSettled(joiners.map(c => c.connect(spec.timeoutS * 1000)))
  const allS = (performance.now() - s) / 1000
  clearInterval(sampler)
  const after = serverMemKb()
  Object.assign(record, {
    joiners: spec.joiners,
    joiners_synced: outcomes.filter(o => o.status === 'fulfilled').length,
    joiners_text_ok: joiners.filter(c => c.text.length === expectedChars).length,
    joiners_all_s: Math.round(allS * 1000) / 1000,
    server_rss_peak_during_joins_kb: Math.max(peak, after.rss),
    server_hwm_kb: after.hwm,
    closed_by_server: ctx.stats.closedByServer,
    errors: ctx.stats.errors
  })
  emit(record)
  closeAll([uploader, ...joiners])
}

const scenarios = {
  fanout: scenarioFanout,
  ramp: scenarioRamp,
  awareness: scenarioAwareness,
  idle: scenarioIdle,
  trace: scenarioTrace,
  coldload: scenarioColdLoad,
  bigdoc: scenarioBigDoc
}

try {
  await scenarios[spec.scenario]()
  await sleep(100)
  process.exit(0)
} catch (err) {
  emit({ error: String(err && err.stack ? err.stack.split('\n').slice(0, 3).join(' | ') : err) })
  process.exit(1)
}
