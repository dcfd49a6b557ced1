/**
 * Helpers of `llm-surgeon prune`: the throttled stderr progress line, zero counting on the exported
 * (dtype-rounded) host weights by the official convention (W' = weight + bias of every prunable
 * linear, W alone for a linear without bias; ALGORITHM.md §1), N:M group checks, and per-module-type
 * and per-decoder-layer aggregation for report.json, and its compaction section (--compact).
 */

import { packedCols, type PrunableLayer } from '../arch/types';
import type { CompactionSummary } from '../io/export';

const PROGRESS_INTERVAL_S = 3; // one progress line every few seconds: readable in logs, not spam

/** Seconds as "42 s", "3m05s" or "1h02m". */
export function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 100) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - m * 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** One progress line: a job progress event of the pruning step (prune-job.ts progressLine; a peer is one "shot"). */
export interface ProgressLine { phase: string; shot: number; shots: number; layer?: string; fraction: number; etaSeconds?: number; pass?: number; passes?: number }

/** A logger to stderr with elapsed time, and a throttled printer for progress events. */
export function makeLog(quiet: boolean, start: number): { log: (msg: string) => void; progress: (p: ProgressLine) => void } {
  const el = () => (performance.now() - start) / 1000;
  const log = (msg: string): void => {
    if (!quiet) process.stderr.write(`[${fmtSeconds(el()).padStart(6)}] ${msg}\n`);
  };
  let last = -Infinity, shot = 0, shotStart = 0, shotsDone = 0, doneSeconds = 0;
  const progress = (p: ProgressLine): void => {
    const t = el();
    if (p.shot !== shot) {
      if (shot > 0) { shotsDone++; doneSeconds += t - shotStart; }
      shot = p.shot;
      shotStart = t;
    }
    if (t - last < PROGRESS_INTERVAL_S) return;
    last = t;
    // ETA from the mean duration of finished shots (phases within a shot are uneven, so the in-shot
    // fraction is a poor clock); during the first shot, the event's own estimate if it has one.
    const etaS = shotsDone ? Math.max(0, (doneSeconds / shotsDone) * (p.shots - p.shot + 1) - (t - shotStart)) : p.etaSeconds;
    // "model.decoder.layers.3.fc1" (OPT), "model.layers.3.mlp.up_proj" (Llama) → "L3.…"
    const layer = p.layer ? ` ${p.layer.replace(/^model\.(decoder\.)?layers\./, 'L')}` : '';
    const eta = etaS !== undefined ? `, ETA ${fmtSeconds(etaS)}` : '';
    const pass = p.pass && p.passes ? ` pass ${p.pass}/${p.passes}` : '';
    log(`${p.shots > 1 ? `shot ${p.shot}/${p.shots} ` : ''}${p.phase}${pass}${layer} ${(p.fraction * 100).toFixed(0)}%${eta}`);
  };
  return { log, progress };
}

export interface LayerCount {
  name: string;
  /** The family's module label (q_proj … fc2, down_proj). */
  type: string;
  layer: number;
  /** R·(C+1) with a bias (weight plus bias column), R·C without. */
  params: number;
  zeros: number;
  /** N:M only: groups of m consecutive inputs (bias excluded) holding ≥ n zeros, and all groups. */
  nmGroups?: { full: number; total: number };
}

/** Exact zeros of W' per prunable layer in `weights` (the values as exported). */
export function countLayerZeros(weights: Map<string, Float32Array>, layers: readonly PrunableLayer[], nm?: { n: number; m: number }): LayerCount[] {
  return layers.map((L) => {
    const w = weights.get(`${L.name}.weight`)!;
    let zeros = 0;
    for (let i = 0; i < w.length; i++) if (w[i] === 0) zeros++;
    if (L.bias) {
      const b = weights.get(`${L.name}.bias`)!;
      for (let i = 0; i < b.length; i++) if (b[i] === 0) zeros++;
    }
    const out: LayerCount = { name: L.name, type: L.type, layer: L.layer, params: L.R * packedCols(L), zeros };
    if (nm) {
      let full = 0;
      const groups = L.C / nm.m;
      for (let r = 0; r < L.R; r++) {
        for (let g = 0; g < groups; g++) {
          let z = 0;
          for (let j = 0; j < nm.m; j++) if (w[r * L.C + g * nm.m + j] === 0) z++;
          if (z >= nm.n) full++;
        }
      }
      out.nmGroups = { full, total: L.R * groups };
    }
    return out;
  });
}

/**
 * report.json's allocation section: per prunable layer (zeros counted on the exported weights, with the
 * rows/columns removed from pruneModel's report, if structured), per module type and per decoder layer.
 */
export function allocation(counts: LayerCount[], removed: ReadonlyArray<{ name: string; rowsRemoved?: number; colsRemoved?: number }>) {
  const byName = new Map(removed.map((l) => [l.name, l]));
  const layers = counts.map((c) => {
    const r = byName.get(c.name);
    return {
      ...c,
      sparsity: c.zeros / c.params,
      ...(r?.rowsRemoved !== undefined ? { rowsRemoved: r.rowsRemoved, colsRemoved: r.colsRemoved } : {}),
    };
  });
  const group = (key: (c: LayerCount) => string) => {
    const out: Record<string, { params: number; zeros: number; sparsity: number }> = {};
    for (const c of counts) {
      const a = (out[key(c)] ??= { params: 0, zeros: 0, sparsity: 0 });
      a.params += c.params;
      a.zeros += c.zeros;
    }
    for (const a of Object.values(out)) a.sparsity = a.zeros / a.params;
    return out;
  };
  const params = counts.reduce((a, c) => a + c.params, 0), zeros = counts.reduce((a, c) => a + c.zeros, 0);
  return { params, zeros, achievedSparsity: zeros / params, layers, byModuleType: group((c) => c.type), byDecoderLayer: group((c) => String(c.layer)) };
}

/**
 * report.json's compaction (--compact): per decoder layer the widths before and after and the units
 * removed, parameters and tensor data bytes before/after, whether config.json is stock, and the
 * perplexity of the compact model itself (our runtime, the same windows as perplexity.pruned).
 */
export function compactionReport(c: CompactionSummary, uniform: boolean, perplexity: number | undefined) {
  const dim = (before: number, after: number) => ({ before, after, removed: before - after });
  return {
    uniform, stockConfig: c.stock, params: c.params, bytes: c.bytes,
    keptParamsFraction: c.params.after / c.params.before,
    layers: c.layers.map((l, layer) => ({
      layer, ffnDim: dim(l.before.ffnDim, l.ffnDim), numHeads: dim(l.before.numHeads, l.numHeads), numKvHeads: dim(l.before.numKvHeads, l.numKvHeads),
    })),
    perplexity: perplexity ?? null,
  };
}
