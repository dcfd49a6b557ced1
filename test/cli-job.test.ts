/**
 * One orchestrator (issue 13, deliverable 3): `llm-surgeon prune` runs the job that prune() and the
 * worker run (src/api/job.ts), not a copy of it beside it.
 * - The CLI's prune modules call no pruning step, memory check, window draw, tokenizer load or upload of
 *   their own (their sources name none of them).
 * - Every CLI prune goes through prepareJob and runPreparedJob, once each (spied through the module).
 * - The same settings through the CLI and through runPruneJob give bit-identical weights, the same zeros
 *   per layer, dense perplexity, K-FAC batch and estimated peak (K-OBD 2:4 one shot; Wanda element).
 * opt-micro on the software GPU, 4 × 64 calibration tokens and 2 × 128 evaluation tokens from .json ids.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { prepareJob, runPreparedJob, runPruneJob, type PruneJobOptions, type PruneJobReport } from '../src/api/job';
import { prunableLayersOf } from '../src/arch/registry';
import { pruneCommand } from '../src/cli/prune';
import type { GpuContext } from '../src/gpu/context';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint';
import { gpu } from './helpers/gpu';

// Count the CLI's calls into the job (its modules import these bindings from src/api/job.ts).
vi.mock('../src/api/job', async (importOriginal) => {
  const m = await importOriginal<typeof import('../src/api/job')>();
  return { ...m, prepareJob: vi.fn(m.prepareJob), runPreparedJob: vi.fn(m.runPreparedJob) };
});

const MODEL = '/work/shared/models/opt-micro';
const ALL_IDS = JSON.parse(readFileSync('/work/shared/data/wikitext-2-raw/wiki.test.opt-ids.json', 'utf8')) as number[];
const tmp = mkdtempSync(join(tmpdir(), 'llms-cli-job-'));
const CALIB_IDS = ALL_IDS.slice(100_000, 110_000), EVAL_IDS = ALL_IDS.slice(0, 1000);
const CALIB = join(tmp, 'calib.json'), EVAL = join(tmp, 'eval.json');
writeFileSync(CALIB, JSON.stringify(CALIB_IDS));
writeFileSync(EVAL, JSON.stringify(EVAL_IDS));
const SEED = 100; // the CLI's default --seed

interface CliReport {
  options: { batch: number | null };
  layers: Array<{ name: string; zeros: number }>;
  shots: Array<{ achieved: number }> | null;
  perplexity: { dense: number };
  memory: { estimatedPeakBytes: number };
  weightSparsity?: number;
}

async function cli(ctx: GpuContext, out: string, argv: string[]): Promise<{ rep: CliReport; ckpt: LoadedCheckpoint }> {
  const err: string[] = [];
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (err.push(String(s)), true));
  const so = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  let code: number;
  try {
    code = await pruneCommand(['--model', MODEL, '--calib', CALIB, '--eval', EVAL, '--eval-windows', '2', '--eval-seqlen', '128', '--nsamples', '4', '--seqlen', '64', '--quiet', '--out', out, ...argv], { ctx });
  } finally {
    se.mockRestore();
    so.mockRestore();
  }
  expect(code, err.join('')).toBe(0);
  return { rep: JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as CliReport, ckpt: await loadCheckpoint(out) };
}

describe('the CLI and prune() share one job', () => {
  let ctx: GpuContext;
  let host: LoadedCheckpoint;
  beforeAll(async () => {
    ctx = await gpu();
    host = await loadCheckpoint(MODEL);
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('the CLI prune sources name no pruning step, memory check, window draw, tokenizer load or upload', () => {
    const dir = join(import.meta.dirname, '../src/cli');
    const files = readdirSync(dir).filter((f) => /^prune.*\.ts$|^checks\.ts$/.test(f));
    expect(files).toContain('prune.ts');
    // What runPreparedJob / prepareJob do; a CLI copy of any of them is a second orchestrator.
    const forbidden = [
      /surgeon\/prune'/, /surgeon\/peers/, /\bpruneModel\(/, /\bsparsegptPrune\b/, /\bwandaPrune\b/, /\bresolveOptions\(/, /\bresolvePeer\(/,
      /api\/job-memory'/, /\bcheckJobMemory\(/, /\bautoKfacBatch\(/, /\bplanPrune\(/, /\bcalibrationWindows\(/, /\bloadTokenizer\(/, /\.fromCheckpoint\(/,
    ];
    for (const f of files) {
      const src = readFileSync(join(dir, f), 'utf8');
      for (const re of forbidden) expect(re.test(src), `src/cli/${f} matches ${re}`).toBe(false);
    }
  });

  const cases: Array<{ label: string; argv: string[]; opts: Omit<PruneJobOptions, 'calibration' | 'evaluate'> }> = [
    { label: 'K-OBD 2:4, one shot', argv: ['--structure', '2:4', '--method', 'kobd', '--shots', '1'], opts: { structure: '2:4', sparsity: 0.5, method: 'kobd', shots: 1 } },
    { label: 'Wanda element 30%', argv: ['--structure', 'element', '--sparsity', '0.3', '--method', 'wanda'], opts: { structure: 'element', sparsity: 0.3, method: 'wanda' } },
  ];
  for (const c of cases) {
    it(`${c.label}: the CLI calls the job once; its weights, zeros, perplexity and estimate are runPruneJob's`, async () => {
      vi.mocked(prepareJob).mockClear();
      vi.mocked(runPreparedJob).mockClear();
      const { rep, ckpt } = await cli(ctx, join(tmp, c.label.replace(/\W+/g, '-')), c.argv);
      expect([vi.mocked(prepareJob).mock.calls.length, vi.mocked(runPreparedJob).mock.calls.length]).toEqual([1, 1]);

      const api = await runPruneJob(ctx, host, {
        ...c.opts,
        calibration: { ids: CALIB_IDS, nsamples: 4, seqlen: 64, seed: SEED, batch: 'auto' },
        evaluate: { ids: EVAL_IDS, seqlen: 128, windows: 2, everyShot: false },
      });
      const r: PruneJobReport = api.report;
      expect(rep.perplexity.dense).toBe(r.densePerplexity);
      expect(rep.memory.estimatedPeakBytes).toBe(r.memory.estimatedPeakBytes);
      if (rep.options.batch !== undefined && rep.options.batch !== null) expect(rep.options.batch).toBe(r.calibration.batch);
      expect(rep.layers.map((L) => [L.name, L.zeros])).toEqual(r.layers.map((L) => [L.name, L.zeros]));
      if (rep.shots) expect(rep.shots.map((s) => s.achieved)).toEqual(r.shots.map((s) => s.achieved));
      else expect(rep.weightSparsity).toBe(r.weightSparsity);
      // float32 export: the file holds exactly the job's weights
      for (const L of prunableLayersOf(host.config)) {
        for (const n of L.bias ? [`${L.name}.weight`, `${L.name}.bias`] : [`${L.name}.weight`]) {
          const a = ckpt.tensors.get(n)!, b = api.model.tensors.get(n)!;
          let diff = 0;
          for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) diff++;
          expect([n, a.length, diff]).toEqual([n, b.length, 0]);
        }
      }
    });
  }
});
