// A real Yjs client (yjs + y-websocket's WebsocketProvider) steered line by line from stdin, for
// duet's end-to-end tests. Each input line is a JSON command; each gets exactly one JSON line
// back on stdout.
//
//   node client.mjs ws://127.0.0.1:7070 ROOM NAME COLOR
//
// Commands: {"cmd":"insert","pos":N,"text":"…"}  {"cmd":"delete","pos":N,"len":N}
//           {"cmd":"insertAt","frac":0..1000,"text":"…"}  {"cmd":"deleteAt","frac":0..1000,"chars":N}
//           {"cmd":"text"}  {"cmd":"sv"}  {"cmd":"cursor","anchor":N,"head":N}
//           {"cmd":"peers"}  {"cmd":"disconnect"}  {"cmd":"connect"}  {"cmd":"synced"}
//           {"cmd":"closes"} (the close codes the server sent, and whether it will reconnect)
//           {"cmd":"quit"}
// Positions are UTF-16 indices, as Yjs counts them.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [url, room, name, color] = process.argv.slice(2)
const doc = new Y.Doc()
const ytext = doc.getText('content')
const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
provider.awareness.setLocalStateField('user', { name, color })

// Close codes of the connections the server closed, in order.
const closes = []
provider.on('connection-close', (event) => { if (event) closes.push(event.code) })

const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const waitSynced = () => new Promise((resolve) => {
  if (provider.synced) return resolve()
  const on = (synced) => { if (synced) { provider.off('sync', on); resolve() } }
  provider.on('sync', on)
})

const absolute = (rel) => {
  if (!rel) return null
  const abs = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(rel), doc)
  return abs ? abs.index : null
}

// The UTF-16 index of the code-point boundary `frac` per mille through the current text,
// computed at the moment of the edit (never from an older snapshot).
const boundaryAt = (frac) => {
  const points = Array.from(ytext.toString())
  const n = Math.floor(points.length * frac / 1000)
  return points.slice(0, n).join('').length
}

const handlers = {
  insertAt: ({ frac, text }) => { ytext.insert(boundaryAt(frac), text); return {} },
  deleteAt: ({ frac, chars }) => {
    const points = Array.from(ytext.toString())
    const from = Math.floor(points.length * frac / 1000)
    const start = points.slice(0, from).join('').length
    const len = points.slice(from, from + chars).join('').length
    if (len > 0) ytext.delete(start, len)
    return {}
  },
  insert: ({ pos, text }) => { ytext.insert(pos, text); return {} },
  delete: ({ pos, len }) => { ytext.delete(pos, len); return {} },
  text: () => ({ text: ytext.toString() }),
  sv: () => ({ sv: Object.fromEntries([...Y.decodeStateVector(Y.encodeStateVector(doc))].map(([k, v]) => [String(k), v])) }),
  cursor: ({ anchor, head }) => {
    provider.awareness.setLocalStateField('cursor', {
      anchor: Y.createRelativePositionFromTypeIndex(ytext, anchor),
      head: Y.createRelativePositionFromTypeIndex(ytext, head)
    })
    return {}
  },
  peers: () => {
    const peers = []
    provider.awareness.getStates().forEach((state, clientID) => {
      if (clientID === doc.clientID || !state) return
      peers.push({
        clientID,
        name: state.user?.name ?? null,
        color: state.user?.color ?? null,
        anchor: absolute(state.cursor?.anchor),
        head: absolute(state.cursor?.head)
      })
    })
    return { peers }
  },
  disconnect: () => { provider.disconnect(); return {} },
  connect: () => { provider.connect(); return {} },
  synced: async () => { await waitSynced(); return {} },
  closes: () => ({ closes, reconnects: provider.shouldConnect }),
  quit: () => { provider.destroy(); setTimeout(() => process.exit(0), 50); return {} }
}

const rl = readline.createInterface({ input: process.stdin })
let queue = Promise.resolve()
rl.on('line', (line) => {
  queue = queue.then(async () => {
    try {
      const msg = JSON.parse(line)
      const handler = handlers[msg.cmd]
      if (!handler) return reply({ error: `unknown command ${msg.cmd}` })
      reply({ ok: true, ...(await handler(msg)) })
    } catch (e) {
      reply({ error: String(e && e.stack || e) })
    }
  })
})
rl.on('close', () => { queue.then(() => { provider.destroy(); process.exit(0) }) })
