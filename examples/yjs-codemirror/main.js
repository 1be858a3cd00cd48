// A CodeMirror 6 editor bound to a duet room through Yjs. Everything here is the standard
// y-codemirror.next set-up; only the three marked lines are about duet.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { yCollab } from 'y-codemirror.next'
import { EditorView, basicSetup } from 'codemirror'

// Settings from the page's query string, e.g. ?server=ws://127.0.0.1:7070&room=notes.md&name=ada
const params = new URLSearchParams(location.search)
const server = params.get('server') ?? 'ws://127.0.0.1:7070' // (1) the duet server, no path
const room = params.get('room') ?? 'notes.md' // (2) the room duet users join (--room or file name)
const name = params.get('name') ?? 'web-' + Math.floor(Math.random() * 1000)
const color = params.get('color') ?? '#30bced' // #rrggbb: duet shows other forms in a colour of its own

const ydoc = new Y.Doc()
const ytext = ydoc.getText('content') // (3) the one text every duet room holds
const token = params.get('token') // only for a server that requires access tokens
const provider = new WebsocketProvider(server, room, ydoc, { params: token ? { token } : {} })
provider.awareness.setLocalStateField('user', { name, color, colorLight: color + '33' })

const view = new EditorView({
  doc: ytext.toString(),
  extensions: [basicSetup, EditorView.lineWrapping, yCollab(ytext, provider.awareness)],
  parent: document.querySelector('#editor')
})

// A status line: connection, sync, and who else is here.
const status = document.querySelector('#status')
const render = () => {
  const others = []
  provider.awareness.getStates().forEach((state, id) => {
    if (id !== ydoc.clientID && state.user) others.push(state.user.name)
  })
  status.textContent = `${room} @ ${server}: ${provider.wsconnected ? 'connected' : 'offline'}` +
    `${provider.synced ? ', synced' : ''} · you are ${name} · also here: ${others.join(', ') || 'nobody'}`
}
provider.on('status', render)
provider.on('sync', render)
provider.awareness.on('change', render)
render()

// For scripted checks (check.mjs) and the devtools console.
window.duet = { Y, ydoc, ytext, provider, view }
