import { defineConfig, type Plugin } from 'vite';
import { chmodSync } from 'node:fs';
import { resolve } from 'node:path';

// The CLI entry is an executable script (package.json "bin"): shebang banner, mode 755 after writing.
const executableCli: Plugin = {
  name: 'executable-cli',
  writeBundle(opts, bundle) {
    if (bundle['cli.mjs']) chmodSync(resolve(opts.dir ?? 'dist-node', 'cli.mjs'), 0o755);
  },
};

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
        cli: resolve(import.meta.dirname, 'src/cli/main.ts'),
        kernels: resolve(import.meta.dirname, 'bench/kernels.ts'),
        model: resolve(import.meta.dirname, 'bench/model.ts'),
        precision: resolve(import.meta.dirname, 'bench/precision.ts'),
        prune: resolve(import.meta.dirname, 'bench/prune.ts'),
        scale: resolve(import.meta.dirname, 'bench/scale.ts'),
        'compact-speed': resolve(import.meta.dirname, 'bench/compact-speed.ts'),
        'prepare-data': resolve(import.meta.dirname, 'bench/prepare-data.ts'),
      },
      external: ['webgpu', /^node:/],
      output: { format: 'es', entryFileNames: '[name].mjs', banner: (chunk) => (chunk.isEntry && chunk.name === 'cli' ? '#!/usr/bin/env node' : '') },
    },
  },
  ssr: { noExternal: true, target: 'node' },
  plugins: [executableCli],
});
