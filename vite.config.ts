import { defineConfig } from 'vitest/config';
import { resolve } from 'node:path';

// SwiftShader's Vulkan ICD (from Debian's chromium package) is the software GPU used by tests/CI;
// a real GPU machine sets VK_ICD_FILENAMES itself (../shared/tools/gpu-pack.sh).
const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';

// vi.mock needs its own module graph; dist-errors replaces worker globals; e2e files run Chromium.
const ISOLATED = ['test/cancel.test.ts', 'test/cli-job.test.ts', 'test/dist-errors.test.ts', 'test/e2e/**/*.test.ts'];

export default defineConfig({
  // Relative asset URLs: the library's worker resolves beside dist/index.js wherever the package is served
  // (with the default '/' it pointed at the site root's /assets/).
  base: './',
  build: {
    target: 'es2022',
    outDir: 'dist',
    lib: {
      entry: { index: resolve(import.meta.dirname, 'src/index.ts') },
      formats: ['es'],
    },
    rollupOptions: {
      // Dawn for Node is loaded lazily and only in Node; never bundled.
      external: ['webgpu', /^node:/],
    },
  },
  test: {
    reporters: ['default', './test/helpers/summary.ts'],
    env: { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? swiftshader },
    // One GPU-heavy file at a time: SwiftShader already uses every core.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 120_000,
    projects: [
      {
        // Most files share one process, so test/helpers/gpu.ts's context (and the WGSL pipelines it has
        // compiled: SwiftShader spends seconds per file compiling them) lives across files.
        extends: true,
        test: { name: 'shared', include: ['test/**/*.test.ts'], exclude: ISOLATED, isolate: false, setupFiles: ['./test/helpers/shared-setup.ts'] },
      },
      // Files that mock modules (vi.mock), replace globals or drive a browser get a fresh module graph.
      { extends: true, test: { name: 'isolated', include: ISOLATED } },
    ],
  },
});
