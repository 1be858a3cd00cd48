// A minimal Yjs application talking to a duet server: joins a room, appends a line, shares a
// cursor, and logs what other people (duet editors or other Yjs apps) change.
//
//   npm ci
//   node index.mjs [ws://127.0.0.1:7070] [ROOM] [NAME]
//
// A server that requires access tokens gets one from DUET_TOKEN (sent as `?token=`).
// Stop with Ctrl-C. Nothing here is duet-specific except the three marked lines.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws' // Node 20 has no global WebSocket; browsers need no polyfill

const [
  url = 'ws://127.0.0.1:7070', // (1) the duet server, no path
  room = 'notes.md', // (2) the room: the same name duet users join (--room or the file name)
  name = 'node-' + process.pid
] = process.argv.slice(2)

const doc = new Y.Doc()
const ytext = doc.getText('content') // (3) the one text every duet room holds
const params = process.env.DUET_TOKEN ? { token: process.env.DUET_TOKEN } : {}
const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket, params })
const awareness = provider.awareness
awareness.setLocalStateField('user', { name, color: '#30bced' })

let quitting = false
const log = (...args) => quitting || console.log(`[${name}]`, ...args)
const show = (s) => JSON.stringify(s)

provider.on('status', ({ status }) => log('connection', status))
provider.on('connection-close', (event) => { if (event) log('server closed the connection', event.code, event.reason) })
// 4400-4499 (refused token, wrong room): y-websocket stops retrying and says so here.
provider.on('closed', ({ code, reason }) => log('refused, not retrying:', code, reason))

// Remote changes: transactions that did not start here.
ytext.observe((event, tr) => {
  if (tr.local) return
  log('remote change', show(event.delta), '→ text now', show(ytext.toString()))
})

// Other people's presence: name and cursor (a UTF-16 index, as Yjs counts). Awareness can
// arrive before the text it points into, so cursors are read again once synced.
const cursorIndex = (rel) => {
  if (!rel) return null
  const abs = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(rel), doc)
  return abs ? abs.index : null
}
const describe = (id) => {
  const state = awareness.getStates().get(id)
  return `${state?.user?.name ?? '?'} (cursor at ${cursorIndex(state?.cursor?.head)})`
}
const names = new Map()
awareness.on('change', ({ added, updated, removed }) => {
  for (const id of [...added, ...updated]) {
    if (id === doc.clientID || !provider.synced) continue
    log(names.has(id) ? 'peer' : 'peer joined', describe(id))
    names.set(id, awareness.getStates().get(id)?.user?.name)
  }
  for (const id of removed) {
    if (names.has(id)) log('peer left', names.get(id))
    names.delete(id)
  }
})

provider.once('sync', () => {
  log('synced; text is', show(ytext.toString()))
  for (const id of awareness.getStates().keys()) {
    if (id === doc.clientID) continue
    log('peer here', describe(id))
    names.set(id, awareness.getStates().get(id)?.user?.name)
  }
  const line = `${name} was here 👋\n`
  ytext.insert(ytext.length, line) // an ordinary Yjs edit; duet users see it at once
  const end = Y.createRelativePositionFromTypeIndex(ytext, ytext.length)
  awareness.setLocalStateField('cursor', { anchor: end, head: end })
  log('appended', show(line))
})

process.on('SIGINT', () => {
  log('final text', show(ytext.toString()))
  quitting = true
  provider.destroy()
  process.exit(0)
})
