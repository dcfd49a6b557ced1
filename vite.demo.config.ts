import { defineConfig, type Connect, type Plugin } from 'vite';
import { createReadStream, existsSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * The demo page (demo/ → dist-demo/): `npm run demo` builds it and serves it with vite preview on
 * 127.0.0.1. Everything it needs (opt-micro and llama-micro in demo/public/models, the default text) is
 * bundled, so it works offline. WikiText-2 is never copied: in development, when ../shared is present, this server
 * answers /dev-data/wikitext-2-raw/wiki.test.raw from it and the page offers it as evaluation text.
 */
const root = import.meta.dirname;
const wikitext = resolve(root, '../shared/data/wikitext-2-raw');
const DEV_DATA = '/dev-data/wikitext-2-raw/';
const SERVED = new Set(['wiki.test.raw']);

function devWikitext(): Plugin {
  const handler: Connect.NextHandleFunction = (req, res, next) => {
    const path = (req.url ?? '').split('?')[0];
    if (!path.startsWith(DEV_DATA)) return next();
    const file = path.slice(DEV_DATA.length);
    const full = resolve(wikitext, file);
    if (!SERVED.has(file) || !existsSync(full)) {
      res.statusCode = 404;
      return res.end('WikiText-2 is not available here (development only: ../shared/data)');
    }
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    createReadStream(full).pipe(res);
  };
  return {
    name: 'dev-wikitext',
    configureServer: (s) => void s.middlewares.use(handler),
    configurePreviewServer: (s) => void s.middlewares.use(handler),
  };
}

export default defineConfig({
  root: resolve(root, 'demo'),
  base: './',
  publicDir: resolve(root, 'demo/public'),
  plugins: [devWikitext()],
  build: {
    outDir: resolve(root, 'dist-demo'),
    emptyOutDir: true,
    target: 'es2022',
    // Not minified: typed errors are matched across the worker boundary by class name (SurgeonError subclasses).
    minify: false,
    chunkSizeWarningLimit: 4096,
  },
  worker: { format: 'es' },
  server: { host: '127.0.0.1' },
  preview: { host: '127.0.0.1' },
});
