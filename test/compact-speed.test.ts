/**
 * The demo's compact readout below the page: measureCompactSpeed (api/compact-speed.ts) on a tiny OPT
 * with a head and FFN neurons dead — sizes from the compaction, the same greedy tokens, positive speeds,
 * bad token counts refused — and the readout line the page shows (demo/ui/compact.ts).
 */
import { describe, expect, it } from 'vitest';
import { measureCompactSpeed } from '../src/api/compact-speed';
import { compactModel } from '../src/compact/index';
import { ShapeError } from '../src/gpu/errors';
import { DecoderModel } from '../src/model/index';
import { compactReadout } from '../demo/ui/compact';
import { optCkpt, zeroHeadO, zeroNeuronRow } from './helpers/compact';
import { gpu } from './helpers/gpu';

describe('compact speed readout', () => {
  it('measures the zeroed and the compact model: sizes, same tokens, tokens/s; the page line says so', async () => {
    const ctx = await gpu();
    const ckpt = optCkpt(41);
    zeroHeadO(ckpt, 0, 2);
    for (const i of [0, 4, 8, 9]) zeroNeuronRow(ckpt, 1, i);
    const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
    try {
      const r = await measureCompactSpeed(ctx, model, ckpt, [2, 5, 7, 11], 6);
      const cm = compactModel(ckpt.config, ckpt.tensors);
      expect(r.params).toEqual({ dense: cm.params.before, compact: cm.params.after });
      expect(r.bytes).toEqual({ dense: 4 * cm.params.before, compact: 4 * cm.params.after });
      expect(r.layers).toEqual([{ ffnDim: 32, numHeads: 3, numKvHeads: 3 }, { ffnDim: 28, numHeads: 4, numKvHeads: 4 }]);
      expect(r.tokens).toBe(6);
      expect(r.sameTokens).toBe(true);
      expect(r.tokensPerSecond.dense).toBeGreaterThan(0);
      expect(r.tokensPerSecond.compact).toBeGreaterThan(0);
      await expect(measureCompactSpeed(ctx, model, ckpt, [2], 0)).rejects.toThrow(ShapeError);

      const line = compactReadout({ ...r, tokensPerSecond: { dense: 10, compact: 15 } });
      expect(line).toContain(`${cm.params.after.toLocaleString('en-US')} of ${cm.params.before.toLocaleString('en-US')} parameters`);
      expect(line).toContain('FFN widths 32/28, heads 3/4');
      expect(line).toContain('10.0 tokens/s dense → 15.0 tokens/s compact (1.50×), same text.');
      expect(compactReadout({ ...r, sameTokens: false })).toMatch(/the text differs/);
    } finally {
      model.dispose();
    }
  });
});
