import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { diagonal, dampInPlace } from '../src/kernels/diag';

describe('diag kernels', () => {
  it.each([1, 7, 300, 513])('extracts and damps the diagonal of a batch of n=%i matrices', async (n) => {
    const ctx = await gpu();
    const batch = 3;
    const { f32: m32, f64: m64 } = f32(randn(batch * n * n, n).map(Math.abs));
    const m = ctx.upload(m32, [batch, n, n]);
    const d = await diagonal(ctx, m).read();
    const added = await dampInPlace(ctx, m, 0.01).read();
    const after = await m.read();
    for (let b = 0; b < batch; b++) {
      let s = 0;
      for (let i = 0; i < n; i++) {
        const ref = m64[b * n * n + i * n + i];
        expect(d[b * n + i]).toBe(Math.fround(ref));
        s += ref;
      }
      const add = (0.01 * s) / n;
      expect(Math.abs(added[b] - add)).toBeLessThanOrEqual(1e-6 * Math.abs(add) + 1e-12);
      for (let i = 0; i < n; i++) {
        const k = b * n * n + i * n + i;
        expect(Math.abs(after[k] - (m64[k] + add))).toBeLessThanOrEqual(2e-7 * (m64[k] + add));
        if (n > 1) expect(after[b * n * n + (i === 0 ? 1 : i * n)]).toBe(m32[b * n * n + (i === 0 ? 1 : i * n)]);
      }
    }
    m.dispose();
  });
});
