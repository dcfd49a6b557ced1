import { defineConfig } from 'vitest/config';
import { resolve } from 'node:path';

// SwiftShader's Vulkan ICD (from Debian's chromium package) is the software GPU used by tests/CI;
// a real GPU machine sets VK_ICD_FILENAMES itself (../shared/tools/gpu-pack.sh).
const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';

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
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/helpers/summary.ts'],
    env: { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? swiftshader },
    // One GPU-heavy file at a time: SwiftShader already uses every core.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
