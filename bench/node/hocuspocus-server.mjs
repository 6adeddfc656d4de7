// Hocuspocus (@hocuspocus/server, pinned in package-lock.json) as a benchmark peer.
// Memory only: its SQLite extension needs the native `sqlite3` module, which has
// no prebuilt binary in the npm package for this platform and cannot be built
// offline (see bench/README.md). Default settings otherwise.
//
//   node hocuspocus-server.mjs PORT
import { Server } from '@hocuspocus/server'

const port = Number(process.argv[2])
const server = new Server({ port, address: '127.0.0.1', quiet: true })
await server.listen()
console.log(`hocuspocus listening on 127.0.0.1:${port}`)
