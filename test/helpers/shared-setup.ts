import { afterAll } from 'vitest';
import { sharedPoolTrim } from './gpu';

// Files share the GPU context (vite.config.ts): give back each file's pooled (free) buffers when it ends,
// so host memory under the software GPU stays that of one file, not the union of all of them.
afterAll(async () => { await sharedPoolTrim(); });
