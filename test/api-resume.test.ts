/**
 * Resumable jobs (src/api/jobstore.ts): a 3-shot job interrupted after shot 1 — by a cancel, or by a
 * lost device — and resumed from its checkpoint folder gives bit-identical weights to an uninterrupted
 * run; the caller's model is never modified; a checkpoint of another job is refused by name; a finished
 * checkpoint answers again without re-running shots.
 * Runs on a small random OPT (fast on SwiftShader); opt-micro goes through the same code in api-prune.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointMismatchError, DeviceLostError, localSession, prune, PruneAbortedError, type HostModel, type PruneJobOptions } from '../src/index';
import { modelFingerprint } from '../src/api/job';
import { tinyOpt } from '../src/reference/tinyopt';
import { gpu } from './helpers/gpu';
import { rng } from './helpers/rng';
import { toCheckpoint } from './helpers/surgeon';

const CFG = { layers: 2, d: 16, heads: 4, ffn: 32, vocab: 64, maxPos: 32 };
let dir: string;
let model: HostModel;
const r = rng(5);
const ids = Array.from({ length: 600 }, () => Math.floor(r() * CFG.vocab));
const OPTS: PruneJobOptions = {
  structure: 'element', sparsity: 0.6, shots: 3, maxChunk: 48, // 48-entry correlated chunks: several chunks per layer
  calibration: { ids, nsamples: 4, seqlen: 16, seed: 3 },
  evaluate: { ids, seqlen: 16, windows: 4 },
};

beforeAll(async () => {
  await gpu();
  const m = tinyOpt({ ...CFG, seed: 11 });
  model = toCheckpoint({ cfg: m.cfg, w: new Map([...m.w].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))])) });
  dir = await mkdtemp(join(tmpdir(), 'surgeon-resume-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every tensor bit for bit (NaN-safe, −0 ≠ +0). */
function expectSameBits(a: HostModel, b: HostModel): void {
  expect([...a.tensors.keys()]).toEqual([...b.tensors.keys()]);
  for (const [name, t] of a.tensors) {
    const u = new Uint32Array(t.buffer, t.byteOffset, t.length), v = new Uint32Array(b.tensors.get(name)!.buffer, b.tensors.get(name)!.byteOffset, t.length);
    let diff = 0;
    for (let i = 0; i < u.length; i++) if (u[i] !== v[i]) diff++;
    expect(diff, `${name}: ${diff} values differ`).toBe(0);
  }
}

/** Run `opts` and interrupt it once shot `at` starts (after the previous shot's checkpoint). */
async function interrupted(at: number, how: (ctl: AbortController) => void, checkpoint: PruneJobOptions['checkpoint']): Promise<unknown> {
  const ctl = new AbortController();
  let fired = false;
  return prune(model, {
    ...OPTS, checkpoint, signal: ctl.signal,
    onProgress: (p) => { if (!fired && p.phase === 'curvature' && p.shot?.index === at) { fired = true; how(ctl); } },
  }).then(() => 'finished', (e) => e);
}

describe('resume', () => {
  let full: Awaited<ReturnType<typeof prune>>;

  it('an uninterrupted 3-shot run (reference)', async () => {
    const t0 = performance.now();
    full = await prune(model, OPTS);
    console.log(`[resume] 3 shots uninterrupted: ${((performance.now() - t0) / 1000).toFixed(1)} s, sparsity ${full.report.achievedSparsity}`);
    expect(full.report.shots).toHaveLength(3);
  });

  it('cancelled after shot 1, then resumed: bit-identical weights and the same report', async () => {
    const before = modelFingerprint(model);
    const ck = { dir: join(dir, 'cancel') };
    const e = await interrupted(2, (c) => c.abort(), ck);
    expect(e).toBeInstanceOf(PruneAbortedError);
    expect((await readdir(ck.dir)).sort()).toEqual(['state.json', 'weights-1.safetensors']);
    const res = await prune(model, { ...OPTS, checkpoint: ck });
    expect(res.report.resumedFromShot).toBe(1);
    expectSameBits(res.model, full.model);
    expect(res.report.shots.map((s) => s.ppl)).toEqual(full.report.shots.map((s) => s.ppl));
    expect(res.report.densePerplexity).toBe(full.report.densePerplexity);
    expect(modelFingerprint(model)).toBe(before); // the caller's model was never written

    // A finished checkpoint answers again without running a shot, with the same weights.
    const again = await prune(model, { ...OPTS, checkpoint: ck });
    expect(again.report.resumedFromShot).toBe(3);
    expectSameBits(again.model, full.model);
    expect(again.report.achievedSparsity).toBe(full.report.achievedSparsity);
  });

  it('interrupted by a lost device during shot 2, then resumed on a new device: bit-identical', async () => {
    const ck = { dir: join(dir, 'lost') };
    const e = await interrupted(2, () => localSession().loseDevice(), ck);
    expect(e).toBeInstanceOf(DeviceLostError);
    const res = await prune(model, { ...OPTS, checkpoint: ck });
    expect(res.report.resumedFromShot).toBe(1);
    expectSameBits(res.model, full.model);
  });

  it('refuses a checkpoint of another job by name; resume: false starts afresh', async () => {
    const ck = { dir: join(dir, 'cancel') };
    const other = await prune(model, { ...OPTS, sparsity: 0.5, checkpoint: ck }).catch((x) => x);
    expect(other).toBeInstanceOf(CheckpointMismatchError);
    expect((other as CheckpointMismatchError).field).toBe('options');
    const seeded = await prune(model, { ...OPTS, calibration: { ...OPTS.calibration, seed: 4 }, checkpoint: ck }).catch((x) => x);
    expect((seeded as CheckpointMismatchError).field).toBe('options');
    const fresh = await prune(model, { ...OPTS, shots: 1, checkpoint: { ...ck, resume: false } });
    expect(fresh.report.resumedFromShot).toBe(0);
  });
});
