// A tiny static file server for this folder (index.html and the esbuild output in dist/).
//   node serve.mjs [PORT]    (default 8080, loopback only)
import http from 'node:http'
import { readFile } from 'node:fs/promises'
import { extname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('.', import.meta.url))
const port = Number(process.argv[2] ?? 8080)
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.map': 'application/json' }

http.createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname
  const file = normalize(join(root, path === '/' ? 'index.html' : path))
  const allowed = file === join(root, 'index.html') || file.startsWith(join(root, 'dist/'))
  try {
    if (!allowed) throw new Error('not served')
    const body = await readFile(file)
    res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream' })
    res.end(body)
  } catch {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n')
  }
}).listen(port, '127.0.0.1', () => console.log(`serving http://127.0.0.1:${port}/`))
