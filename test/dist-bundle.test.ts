/**
 * The shipped library bundle (dist/, built by `npm run build` before the tests in CI): its worker is
 * referenced relative to dist/index.js, so the package works wherever it is served from (a site-root
 * "/assets/…" URL only worked when the page's origin served the bundle at its root).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const DIST = join(import.meta.dirname, '..', 'dist');

describe('dist bundle', () => {
  it('loads its worker relative to index.js, and the worker file exists', () => {
    const index = join(DIST, 'index.js');
    if (!existsSync(index)) throw new Error(`${index} is missing: run \`npm run build\` before this test`);
    const src = readFileSync(index, 'utf8');
    const refs = [...src.matchAll(/["'`]([^"'`]*assets\/worker-[\w-]+\.js)["'`]/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThan(0);
    for (const r of refs) {
      expect(r.startsWith('/'), `worker URL ${r} is absolute`).toBe(false);
      expect(existsSync(join(DIST, r.replace(/^\.\//, '')))).toBe(true);
    }
  });
});
