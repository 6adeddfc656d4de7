// Builds the browser client into dist/: the pages (src/*.html) with the
// content-hashed bundles esbuild makes from src/list.js and src/editor.js, and
// next to every script and stylesheet its gzip (.gz) and brotli (.br) copy,
// which the server sends to browsers that accept them (the editor's bundle is
// ~770 KB, 260 KB gzipped, 220 KB with brotli): compressed once here, at the
// highest levels, never per request. (Source maps, read only by developer
// tools, are left as they are.)
//
// The pages keep two marks the server fills in on every response
// (collab/api/web_client.py): %CSP_NONCE%, the nonce of that response's
// Content-Security-Policy, carried by the stylesheet link for the editor to
// give the <style> elements CodeMirror creates, and %REMOTE_IMAGES% (head.html),
// whether the Markdown preview may load images from other sites.
//
// The output is a pure function of src/ and package-lock.json (esbuild is
// deterministic and the hashes are of content), which is why dist/ is built on
// install rather than committed: there is nothing to keep in sync by hand.
import * as esbuild from 'esbuild'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import zlib from 'node:zlib'

const root = path.dirname(fileURLToPath(import.meta.url))
const dist = path.join(root, 'dist')
const pages = { 'index.html': 'src/list.js', 'editor.html': 'src/editor.js' }

await rm(dist, { recursive: true, force: true })
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: Object.values(pages),
  bundle: true,
  format: 'esm',
  target: ['chrome109', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  outdir: path.join(dist, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning'
})

// entry point -> the URLs of its script and stylesheet
const bundles = {}
for (const [output, meta] of Object.entries(result.metafile.outputs)) {
  if (!meta.entryPoint) continue
  bundles[meta.entryPoint] = {
    js: '/assets/' + path.basename(output),
    css: meta.cssBundle ? '/assets/' + path.basename(meta.cssBundle) : null
  }
}

// Everything after the comment line of head.html
const head = (await readFile(path.join(root, 'src', 'head.html'), 'utf8')).split('\n').slice(1).join('\n')
for (const [page, entry] of Object.entries(pages)) {
  const bundle = bundles[entry]
  if (!bundle || !bundle.css) throw new Error(`no bundle for ${entry}`)
  const template = await readFile(path.join(root, 'src', page), 'utf8')
  const html = template
    .replace('%HEAD%', head.trim().replace(/\n/g, '\n  '))
    .replace('%STYLESHEET%', `<link rel="stylesheet" href="${bundle.css}" nonce="%CSP_NONCE%">`)
    .replace('%SCRIPT%', `<script type="module" src="${bundle.js}"></script>`)
  if (/%(HEAD|STYLESHEET|SCRIPT)%/.test(html) || html === template) {
    throw new Error(`${page}: placeholders not replaced`)
  }
  await mkdir(dist, { recursive: true })
  await writeFile(path.join(dist, page), html)
}

// Deterministic like the rest: node's gzip header carries no time or name.
const gzip = promisify(zlib.gzip)
const brotli = promisify(zlib.brotliCompress)
const assets = path.join(dist, 'assets')
await Promise.all((await readdir(assets)).map(async (name) => {
  if (!/\.(js|css)$/.test(name)) return
  const file = path.join(assets, name)
  const bytes = await readFile(file)
  await writeFile(file + '.gz', await gzip(bytes, { level: zlib.constants.Z_BEST_COMPRESSION }))
  await writeFile(file + '.br', await brotli(bytes, {
    params: {
      [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT,
      [zlib.constants.BROTLI_PARAM_QUALITY]: zlib.constants.BROTLI_MAX_QUALITY,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length
    }
  }))
}))

console.log(`built ${Object.keys(pages).join(', ')} into ${path.relative(process.cwd(), dist) || '.'}`)
