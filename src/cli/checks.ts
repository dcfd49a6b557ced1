/**
 * Checks of `llm-surgeon prune` / `eval` that fail a job early and say why: the host memory the
 * calibration windows need, evaluation windows against the text, a perplexity that must be finite;
 * the truthful line for an interrupted run; and one test-only pause before the export is committed.
 */

import { totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { SurgeonError } from '../errors';
import type { StagedFolder } from '../io/export';
import { UsageError } from './args';

/** The calibration windows would not fit the host memory this process can use (exit 2, before they are built). */
export class HostMemoryError extends UsageError {
  static override readonly name: string = 'HostMemoryError';
}

/** A perplexity came out NaN or ±Inf: the weights overflow in the forward pass (exit 1, nothing written). */
export class NonFinitePerplexityError extends SurgeonError {
  static override readonly name: string = 'NonFinitePerplexityError';
}

// Host bytes of one calibration window beyond its tokens: the Int32Array object and its backing store
// (Node 20, 10^6 two-token windows: ≈ 220 B of V8 heap and ≈ 280 B of RSS each), rounded up.
const WINDOW_OVERHEAD_BYTES = 288;

/** Bytes the windows may take: half the machine's memory, and no more than V8's heap limit (objects live there). */
export function hostBudget(): number {
  return Math.min(totalmem() / 2, getHeapStatistics().heap_size_limit);
}

/** HostMemoryError when `nsamples` windows of `seqlen` tokens exceed `budget` bytes, naming what fits. */
export function checkCalibrationBudget(nsamples: number, seqlen: number, budget = hostBudget()): void {
  const per = 4 * seqlen + WINDOW_OVERHEAD_BYTES;
  if (nsamples * per <= budget) return;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  throw new HostMemoryError(`--nsamples ${nsamples} × --seqlen ${seqlen}: the calibration windows need about ${mib(nsamples * per)} of host memory, ` +
    `over the ${mib(budget)} this process may use; at most ${Math.floor(budget / per)} windows of ${seqlen} tokens fit`);
}

/** An evaluation input: its flag and file, its ids, and the flags that set the window length and count. */
export interface EvalInput { flag: string; file: string; tokens: number; empty: boolean; seqlenFlag: string; windowsFlag: string }

/**
 * Number of evaluation windows of `seqlen` tokens in `e` (`windows`: requested, default all), or a
 * UsageError naming the file and the tokens needed. `e.empty`: the file holds no text.
 */
export function evalWindowCount(e: EvalInput, seqlen: number, windows: number | undefined): number {
  const avail = Math.floor(e.tokens / seqlen);
  const held = `${e.flag} ${e.file}: ${e.tokens} token${e.tokens === 1 ? '' : 's'} hold ${avail} windows of ${seqlen}`;
  if (avail < 1) {
    throw new UsageError(`${held}${e.empty ? ' (the file is empty)' : ''}; evaluation needs at least ${seqlen} tokens (one window; ${e.seqlenFlag} sets its length)`);
  }
  if (windows !== undefined && windows > avail) throw new UsageError(`${held}; ${e.windowsFlag} ${windows} needs ${windows * seqlen} tokens`);
  return windows ?? avail;
}

/** `ppl` when finite; otherwise a NonFinitePerplexityError saying `what` was measured (a prune then writes nothing). */
export function finitePerplexity(ppl: number, what: string): number {
  if (Number.isFinite(ppl)) return ppl;
  throw new NonFinitePerplexityError(`${what} perplexity is ${ppl}: the forward pass overflows (weights or activations beyond float32)`);
}

/** Where an interrupted prune stood, for a message that says what was and was not changed. */
export interface RunStage {
  /** A pruning step may have changed a layer of the GPU copy (a peer's layer prune began, or a surgeon update). */
  layersChanged: boolean;
  /** Files were being written into the staging folder beside --out. */
  exporting: boolean;
  /** That staging folder (removed unless committed). */
  staged?: StagedFolder;
}

/** The line printed for a cancelled prune (exit 130). The GPU copy is always discarded by the CLI. */
export function interruptedMessage(s: RunStage, out: string): string {
  if (s.exporting) return `interrupted during the export; ${out} is unchanged (the staged files were removed) and the input model is untouched`;
  if (s.layersChanged) return 'interrupted while pruning; the partly pruned copy in GPU memory is discarded, nothing was written and the input model is untouched';
  return 'interrupted before any layer was pruned; nothing was written and the input model is untouched';
}

/**
 * Test only (test/cli-reliability.test.ts): with LLM_SURGEON_TEST_PAUSE_BEFORE_COMMIT=<ms>, say on
 * stderr that the export is staged and wait (until `signal` aborts at most), so a test can signal the
 * process at exactly this point. Unset: returns at once.
 */
export async function testPauseBeforeCommit(staged: string, signal: AbortSignal): Promise<void> {
  const ms = Number(process.env.LLM_SURGEON_TEST_PAUSE_BEFORE_COMMIT);
  if (!(ms > 0)) return;
  process.stderr.write(`llm-surgeon prune: [test] export staged in ${staged}; pausing ${ms} ms before the commit\n`);
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
