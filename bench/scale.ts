/**
 * Memory-budgeted pruning of random-weight models of real shape (issue 13's targets), one GPU-machine call:
 *   node dist-node/scale.mjs [--shapes opt-125m,opt-1.3b] [--structures rows-cols,element]
 *        [--budgets 2GiB,8GiB] [--nsamples 128] [--seqlen 2048] [--shots 2] [--sparsity 0.025] [--method surgeon]
 *        [--batch 1|N|auto] [--out f]     (--batch: K-FAC windows per forward/backward; auto = the planner's choice)
 *   node dist-node/scale.mjs --plan-only [--nsamples 128,32] …   (no GPU: floors, plans, time estimates;
 *        bench/scale-plan.ts; --host-budget N GiB, default the job's own: half of this machine's memory)
 * Per (shape, structure): the plan prune() makes under the shape's budget, the estimated and the pool's
 * measured peak, seconds per shot and per phase. Weights are uniform with std 0.02 (shape-only timing;
 * quality stays on the fixtures); calibration ids are random. A few shots at a proportionally small
 * sparsity time the per-shot work of a long schedule (the curvature passes dominate and do not depend
 * on the target). Prints a table and writes { runs: [...] } in bench/results/h200-scale.json's schema
 * (the authors' columns stay null here: the official harness runs beside this script).
 */
import { parseModelConfig } from '../src/io/config';
import { prune, type PruneJobOptions } from '../src/index';
import { defaultHostBudget, describePlan } from '../src/api/plan';
import { arg, table, writeJson } from './harness';
import { randomCheckpoint, SHAPES } from './shapes';
import { planRow, printPlanRow } from './scale-plan';

const DEFAULT_BUDGET: Record<string, string> = { 'opt-tiny': '7MiB', 'opt-125m': '2GiB', 'opt-1.3b': '8GiB', 'opt-6.7b': '130GiB', 'llama-7b': '130GiB' };

function bytesOf(s: string): number {
  const m = /^([\d.]+)\s*(GiB|MiB)$/.exec(s);
  if (!m) throw new Error(`a budget like 2GiB or 512MiB, got ${s}`);
  return Math.round(Number(m[1]) * 2 ** (m[2] === 'GiB' ? 30 : 20));
}

/** --host-budget, else the job's own default (api/plan.ts: half of this machine's memory). */
const hostBudget = (): number => (arg('host-budget') ? bytesOf(arg('host-budget')!) : defaultHostBudget(false));

/** --plan-only: every (shape, structure, nsamples) job's floor, plan and time estimate, without a GPU. */
function planOnly(shapes: string[], structures: string[], budgets: string[] | undefined): void {
  const seqlen = Number(arg('seqlen') ?? 2048);
  const host = hostBudget();
  const opt13 = parseModelConfig(SHAPES['opt-1.3b']);
  const rows = [];
  for (const [i, shape] of shapes.entries()) {
    const c = parseModelConfig(SHAPES[shape]);
    for (const structure of structures) {
      for (const ns of (arg('nsamples') ?? '128,32').split(',').map(Number)) {
        const r = planRow(shape, c, opt13, structure, ns, seqlen, bytesOf(budgets?.[i] ?? DEFAULT_BUDGET[shape]), host);
        printPlanRow(r);
        rows.push(r);
      }
    }
  }
  writeJson(arg('out') ?? 'bench/out/scale-plan.json', { date: new Date().toISOString(), host_budget_bytes: host, rows });
}

async function main() {
  const shapes = (arg('shapes') ?? 'opt-125m').split(',');
  const structures = (arg('structures') ?? 'rows-cols,element').split(',');
  const budgets = arg('budgets')?.split(',');
  if (arg('plan-only')) return planOnly(shapes, structures, budgets);
  const nsamples = Number(arg('nsamples') ?? 128), seqlen = Number(arg('seqlen') ?? 2048);
  const shots = Number(arg('shots') ?? 2), sparsity = Number(arg('sparsity') ?? 0.025);
  const batch = arg('batch') === 'auto' ? 'auto' : Number(arg('batch') ?? 1);
  const runs: Array<Record<string, unknown>> = [];
  for (const [i, shape] of shapes.entries()) {
    const config = parseModelConfig(SHAPES[shape]);
    const t0 = performance.now();
    const model = randomCheckpoint(config);
    const params = [...model.tensors.values()].reduce((a, t) => a + t.length, 0);
    console.log(`${shape}: ${params} parameters, random weights in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    let r = 7;
    const ids = Int32Array.from({ length: nsamples * seqlen + 1 }, () => { r = (Math.imul(r, 1103515245) + 12345) >>> 0; return r % config.vocabSize; });
    const budget = bytesOf(budgets?.[i] ?? DEFAULT_BUDGET[shape]);
    for (const structure of structures) {
      printPlanRow(planRow(shape, config, parseModelConfig(SHAPES['opt-1.3b']), structure, nsamples, seqlen, budget, hostBudget()));
      const t1 = performance.now();
      let seen = '';
      const { report } = await prune(model, {
        method: arg('method') ?? 'surgeon', structure, sparsity, shots, memoryBudget: budget,
        calibration: { ids, nsamples, seqlen, batch },
        onProgress: (p) => {
          const at = p.pass ? `shot ${p.shot?.index} pass ${p.pass.index}/${p.pass.total}` : '';
          if (at && at !== seen) console.log(`  ${shape} ${structure} ${at} at ${((performance.now() - t1) / 1000).toFixed(1)} s`);
          seen = at || seen;
        },
      } as PruneJobOptions);
      const secs = (performance.now() - t1) / 1000;
      const plan = report.memory.plan;
      console.log(`  ${shape} ${structure}: ${plan ? describePlan(plan) : 'no plan'}; estimate ${(report.memory.estimatedPeakBytes / 2 ** 30).toFixed(3)} GiB, measured ${(report.memory.measuredPeakBytes / 2 ** 30).toFixed(3)} GiB`);
      runs.push({
        model: `${shape}-shape`, params, method: arg('method') ?? 'surgeon', structure, shots, nsamples, kfac_batch: report.calibration.batch, budget_bytes: budget,
        peak_bytes: report.memory.measuredPeakBytes, estimate_bytes: report.memory.estimatedPeakBytes,
        passes_per_shot: plan?.passesPerShot ?? null, groups: plan?.groups.length ?? null, head_chunk_rows: plan?.headChunkRows ?? null,
        host_bytes: plan?.hostBytes ?? null, split: plan?.split ?? null, streamed: plan?.streamed ?? null, offload_update: plan?.offloadUpdate ?? null,
        plan: plan ? describePlan(plan) : null, estimate_phases: report.memory.estimate?.phases ?? null, seconds_per_shot: report.seconds.total / shots, job_seconds: secs,
        phases: report.seconds, authors_seconds_per_shot: null, ratio_vs_authors: null,
      });
    }
  }
  table(runs.map((x) => ({ model: x.model as string, structure: x.structure as string, budget_gib: (x.budget_bytes as number) / 2 ** 30, peak_gib: (x.peak_bytes as number) / 2 ** 30, estimate_gib: (x.estimate_bytes as number) / 2 ** 30, passes: x.passes_per_shot as number, s_per_shot: x.seconds_per_shot as number })));
  writeJson(arg('out') ?? 'bench/out/scale.json', { date: new Date().toISOString(), commit: process.env.BENCH_COMMIT ?? null, nsamples, seqlen, runs });
}

main().catch((e) => { console.error(e); process.exit(1); });
