import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// Self-contained Node bundles (CLI, benchmarks) that need no node_modules except `webgpu` (Dawn),
// so they can travel to the GPU machine (TOOLCHAIN.md). WGSL is inlined through `?raw`.
export default defineConfig({
  build: {
    target: 'node20',
    outDir: 'dist-node',
    emptyOutDir: true,
    minify: false,
    ssr: true,
    rollupOptions: {
      input: {
        kernels: resolve(import.meta.dirname, 'bench/kernels.ts'),
        model: resolve(import.meta.dirname, 'bench/model.ts'),
        prune: resolve(import.meta.dirname, 'bench/prune.ts'),
        'prepare-data': resolve(import.meta.dirname, 'bench/prepare-data.ts'),
      },
      external: ['webgpu', /^node:/],
      output: { format: 'es', entryFileNames: '[name].mjs' },
    },
  },
  ssr: { noExternal: true, target: 'node' },
});
