import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { matmulSweep, scoped } from '../bench/matmul-sweep';

/** The H200 sweep's robustness on one small case: what fails to plan, validate or compile is reported, not fatal. */
describe('matmul sweep (bench/matmul-sweep.ts)', () => {
  it('times valid variants, reports unknown and invalid ones, writes its JSON', async () => {
    const ctx = await gpu();
    const saved: unknown[] = [];
    const r = await matmulSweep(ctx, {
      quick: true, torch: false, variants: ['w64x64x8', 'nope'], extra: ['w16x16x8'], cases: ['square 128×128×128'], budgetS: 600,
      save: (j) => saved.push(j),
    });
    expect(r.cases.map((c) => c.label)).toEqual(['square 128×128×128 A·B']);
    const by = (v: string) => r.rows.filter((x) => x.variant === v);
    expect(by('w64x64x8')).toHaveLength(1);
    expect(by('w64x64x8')[0]).toMatchObject({ ok: true, split: 'auto 1' });
    expect(by('w64x64x8')[0].err_tol).toBeLessThanOrEqual(1);
    expect(by('w64x64x8')[0].ours_ms).toBeGreaterThan(0);
    expect(by('nope')[0]).toMatchObject({ ok: false });
    expect(by('nope')[0].note).toMatch(/unknown variant 'nope'/);
    expect(by('w16x16x8')[0].note).toMatch(/w16x16x8: lanes/);
    expect(saved.length).toBe(2);   // after the case, and the final report
    // The case's default (reg64x64 on a CPU adapter) is swept too, marked as the default.
    expect(by('reg64x64')[0]).toMatchObject({ ok: true, isDefault: true });
    expect(['w64x64x8 auto 1', 'reg64x64 auto 1']).toContain(r.best[0].best);
  });

  it('a shader that fails to compile is caught by the error scopes and the device stays usable', async () => {
    const ctx = await gpu();
    const a = ctx.zeros([4]);
    const spec = { name: 'broken', source: '@compute @workgroup_size(1) fn main() { let x: u32 = nope; }', bindings: ['write' as const] };
    const err = await scoped(ctx, async () => { ctx.dispatch(spec, {}, [a], [1]); await ctx.sync(); });
    expect(err).toMatch(/nope/);
    const b = ctx.upload(new Float32Array([1, 2, 3, 4]));
    expect(Array.from(await b.read())).toEqual([1, 2, 3, 4]);
  });
});
