// Builds the browser client into dist/: the pages (src/*.html) with the
// content-hashed bundles esbuild makes from src/list.js and src/editor.js.
//
// The output is a pure function of src/ and package-lock.json (esbuild is
// deterministic and the hashes are of content), which is why dist/ is built on
// install rather than committed: there is nothing to keep in sync by hand.
import * as esbuild from 'esbuild'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

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
    .replace('%STYLESHEET%', `<link rel="stylesheet" href="${bundle.css}">`)
    .replace('%SCRIPT%', `<script type="module" src="${bundle.js}"></script>`)
  if (/%(HEAD|STYLESHEET|SCRIPT)%/.test(html) || html === template) {
    throw new Error(`${page}: placeholders not replaced`)
  }
  await mkdir(dist, { recursive: true })
  await writeFile(path.join(dist, page), html)
}
console.log(`built ${Object.keys(pages).join(', ')} into ${path.relative(process.cwd(), dist) || '.'}`)
