/**
 * Which units of a structured result can be removed physically (pure, no GPU): from a config and its
 * weights (canonical names, as LoadedCheckpoint.tensors), per decoder layer the FFN neurons and the
 * attention heads that contribute exactly nothing, by the family's unit rules (FamilySpec.units).
 *
 * - FFN neuron i is dead when its row side is dead (some `rows` linear has row i and its bias entry
 *   all zero: OPT's relu(0·x + 0) = 0, SwiGLU's silu(gate)·up = 0 when either factor's row is zero) or
 *   its column side is (column i of every `cols` linear is zero).
 * - Query head h is dead when its o columns are all zero, or its kv head's v rows (and v bias) are
 *   all zero (softmax·0 = 0). Zero q/k rows do NOT kill a head: the softmax becomes uniform, not zero.
 *   Only whole kv groups go (every query head of a kv head dead), so each layer keeps a uniform
 *   heads-per-kv-head ratio; with multi-head attention a group is one head.
 * - Residual-stream dims stay. A layer keeps at least one neuron and one kv group (the kernels need
 *   non-empty tensors); the kept dead unit still contributes exactly 0.
 * - `uniform`: dead units are kept back (lowest indices first) until every layer has the widest
 *   layer's count, so that the compact config is a stock one (apply.ts); OPT keeps every head (a stock
 *   OPT's attention width is hidden_size). A kept dead unit still contributes exactly 0.
 * Limit: partially dead heads (some v rows / o columns zero) keep their zeros; removing single v/o dims
 * (per-head widths) and q/k RoPE pairs is a follow-up (issue 14).
 */

import { familySpec } from '../arch/registry';
import { layerDims, type LayerDims, type ModelConfig, type UnitRule } from '../arch/types';
import { CheckpointFormatError } from '../io/errors';

export interface LayerPlan {
  /** Kept FFN neurons, ascending indices into the layer's current width. */
  neurons: number[];
  /** Kept query heads (ascending; whole groups of the kept kv heads). */
  heads: number[];
  /** Kept kv heads, ascending. */
  kvHeads: number[];
  /** The layer's widths after compaction. */
  dims: LayerDims;
}

export interface CompactPlan {
  layers: LayerPlan[];
}

type Weights = ReadonlyMap<string, Float32Array>;

/** The tensor `name` of `w`, checked against the config's shape. */
export function tensorOf(w: Weights, shapes: Map<string, number[]>, name: string): Float32Array {
  const t = w.get(name), shape = shapes.get(name);
  if (!shape) throw new CheckpointFormatError('extra', `compact: ${name} is not part of this config`);
  if (!t) throw new CheckpointFormatError('missing', `compact: no weights for ${name}`);
  const n = shape.reduce((a, b) => a * b, 1);
  if (t.length !== n) throw new CheckpointFormatError('shape', `compact: ${name} holds ${t.length} values, config implies [${shape}]`);
  return t;
}

/** Rows [r0, r1) of a row-major [*, C] matrix all zero. */
function rowsZero(W: Float32Array, C: number, r0: number, r1: number): boolean {
  for (let i = r0 * C; i < r1 * C; i++) if (W[i] !== 0) return false;
  return true;
}

/** Per column of a row-major [R, C] matrix: 1 when it holds a nonzero (one pass, row by row). */
function nonzeroCols(W: Float32Array, C: number): Uint8Array {
  const nz = new Uint8Array(C);
  for (let i = 0; i < W.length; i++) if (W[i] !== 0) nz[i % C] = 1;
  return nz;
}

/** Columns [c0, c1) all zero by a nonzeroCols mask. */
const colsZero = (nz: Uint8Array, c0: number, c1: number): boolean => nz.subarray(c0, c1).every((x) => x === 0);

/** Entries [i0, i1) of an optional bias all zero (true without a bias). */
const biasZero = (b: Float32Array | undefined, i0: number, i1: number): boolean => !b || b.subarray(i0, i1).every((x) => x === 0);

function keptNeurons(rule: Extract<UnitRule, { kind: 'ffn' }>, get: (n: string) => Float32Array, has: (n: string) => boolean, p: string): number[] {
  const rows = rule.rows.map((s) => ({ W: get(`${p}${s}.weight`), b: has(`${p}${s}.bias`) ? get(`${p}${s}.bias`) : undefined }));
  const cols = rule.cols.map((s) => nonzeroCols(get(`${p}${s}.weight`), rule.width));
  const kept: number[] = [];
  for (let i = 0; i < rule.width; i++) {
    const rowDead = rows.some(({ W, b }) => rowsZero(W, W.length / rule.width, i, i + 1) && biasZero(b, i, i + 1));
    const colDead = cols.every((nz) => colsZero(nz, i, i + 1));
    if (!rowDead && !colDead) kept.push(i);
  }
  return kept.length ? kept : [0];
}

function keptGroups(rule: Extract<UnitRule, { kind: 'head' }>, get: (n: string) => Float32Array, has: (n: string) => boolean, p: string): number[] {
  const { heads: H, kvHeads: K, headDim: hd } = rule;
  const G = H / K;
  const o = get(`${p}${rule.o}.weight`), v = get(`${p}${rule.v}.weight`);
  const vb = has(`${p}${rule.v}.bias`) ? get(`${p}${rule.v}.bias`) : undefined;
  const vC = v.length / (K * hd);
  const oNz = nonzeroCols(o, H * hd);
  const oDead = (h: number) => colsZero(oNz, h * hd, (h + 1) * hd);
  const kept: number[] = [];
  for (let g = 0; g < K; g++) {
    const vDead = rowsZero(v, vC, g * hd, (g + 1) * hd) && biasZero(vb, g * hd, (g + 1) * hd);
    const dead = vDead || Array.from({ length: G }, (_, j) => oDead(g * G + j)).every(Boolean);
    if (!dead) kept.push(g);
  }
  return kept.length ? kept : [0];
}

/** `kept` plus the lowest other indices below `width` until it holds n (ascending). */
function fill(kept: number[], width: number, n: number): number[] {
  const has = new Set(kept), out = [...kept];
  for (let i = 0; i < width && out.length < n; i++) if (!has.has(i)) out.push(i);
  return out.sort((a, b) => a - b);
}

/** Every layer at the widest layer's counts where its own width allows (see the file comment). */
function equalise(cfg: ModelConfig, layers: LayerPlan[]): LayerPlan[] {
  const f = Math.max(...layers.map((l) => l.neurons.length));
  const kv = cfg.family === 'opt' ? Infinity : Math.max(...layers.map((l) => l.kvHeads.length));
  return layers.map((lp, l) => {
    const d = layerDims(cfg, l), G = d.numHeads / d.numKvHeads;
    const neurons = fill(lp.neurons, d.ffnDim, f), kvHeads = fill(lp.kvHeads, d.numKvHeads, kv);
    const heads = kvHeads.flatMap((g) => Array.from({ length: G }, (_, j) => g * G + j));
    return { neurons, heads, kvHeads, dims: { ffnDim: neurons.length, numHeads: heads.length, numKvHeads: kvHeads.length } };
  });
}

/** The units to keep per decoder layer of `cfg` with weights `w` (nothing is modified). */
export function planCompaction(cfg: ModelConfig, w: Weights, opts: { uniform?: boolean } = {}): CompactPlan {
  const spec = familySpec(cfg);
  const shapes = spec.tensors(cfg);
  const get = (n: string) => tensorOf(w, shapes, n);
  const has = (n: string) => shapes.has(n);
  const layers: LayerPlan[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = spec.layerPrefix(l);
    let neurons: number[] = [], kvHeads: number[] = [], heads: number[] = [];
    for (const rule of spec.units(cfg, l)) {
      if (rule.kind === 'ffn') neurons = keptNeurons(rule, get, has, p);
      else {
        kvHeads = keptGroups(rule, get, has, p);
        const G = rule.heads / rule.kvHeads;
        heads = kvHeads.flatMap((g) => Array.from({ length: G }, (_, j) => g * G + j));
      }
    }
    layers.push({ neurons, heads, kvHeads, dims: { ffnDim: neurons.length, numHeads: heads.length, numKvHeads: kvHeads.length } });
  }
  return { layers: opts.uniform ? equalise(cfg, layers) : layers };
}
