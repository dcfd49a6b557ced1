/**
 * The K-FAC passes of one memory-budgeted shot (api/plan.ts), serving the shot's groups of linears.
 *
 * A pass accumulates the factors of every linear of its decoder layers; the factors of the linears the
 * shot asks for first stay on the GPU, the others are parked in host memory (exact f32 copies) and
 * uploaded when their group comes (so a shot's problems can run one linear at a time while a pass
 * covers whole layers).
 *
 * Streamed passes (top-down contiguous ranges of decoder layers): within a shot the weights do not change
 * between passes, so every batch's activations and gradients are the same in every pass. The first
 * (top) pass runs the whole forward and keeps, in host memory, each lower pass's input (the residual
 * stream entering its lowest layer); every pass keeps ∂L/∂(its lowest layer's input) for the pass below.
 * A lower pass then runs only its own layers: forward from the kept input, backward from the kept
 * gradient. Only the pass's own layers are saved on the GPU, and a shot costs about one full forward and
 * backward plus a second forward of the layers below the top pass — instead of a whole forward and a
 * backward to the pass's lowest layer per pass. The same kernels see the same bits in the same batch order
 * as in the unbudgeted pass, so the factors are bit-identical.
 *
 * Not streamed: each pass is accumulateKfac over the whole model, its backward stopping at the pass's
 * lowest layer (the host keeps no activations).
 */

import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { backwardLayers, headBackward } from './backward';
import { uploadBatch } from './batch';
import { blockOf, releaseSaved } from './blocks';
import { forwardLayers, releaseLayers } from './forward';
import { accumulateKfac, batchPacer, checkKfacInput, drawSeed, kfacAccumulators, kfacDraws, type KfacResult } from './kfac';
import type { DecoderModel, PrunableLayer } from './model';
import { readLowerTriangle, uploadSymmetric } from '../kernels/triangle';

export interface KfacStreamOptions {
  /** Decoder layers of each pass, in the order the shot reaches them. */
  passes: readonly (readonly number[])[];
  /** Keep pass inputs and gradients on the host (the passes must be contiguous ranges, top-down). */
  streamed: boolean;
  fisherSamples?: number;
  seed?: number;
  /** Sequences per forward/backward (default ⌊4096 / T⌋). */
  batch?: number;
  headChunkRows?: number;
}

const SPENT = new Float32Array(0);

interface Run { signal?: AbortSignal; onProgress?: (done: number, total: number) => void }

/** The range [lo, hi) of a pass, checked contiguous. */
function rangeOf(pass: readonly number[]): { lo: number; hi: number } {
  const lo = Math.min(...pass), hi = Math.max(...pass) + 1;
  if (hi - lo !== new Set(pass).size) throw new ShapeError(`kfac stream: a streamed pass must be a contiguous range of decoder layers, got ${pass.join(', ')}`);
  return { lo, hi };
}

export class KfacStream {
  private readonly byLayer = new Map<number, number>(); // decoder layer → pass
  private readonly ran = new Set<number>();
  private readonly linears: PrunableLayer[][]; // per pass
  /** Parked factors ('A:' + input key, 'G:' + linear) and how many unserved linears still need each. */
  private readonly parked = new Map<string, Float32Array>();
  private readonly users = new Map<string, number>();
  /** Streamed: per kept layer input, one host array per batch; the gradient entering the last pass run's lowest layer, per batch and draw. */
  private readonly xs = new Map<number, Float32Array[]>();
  private dx: { at: number; v: Float32Array[][] } | undefined;
  private readonly T: number;
  private readonly k: number;
  private readonly batch: number;
  /** Host bytes held now and at most (boundaries, gradients, parked factors). */
  hostBytes = 0;
  peakHostBytes = 0;

  constructor(private readonly ctx: GpuContext, private readonly model: DecoderModel, private readonly seqs: Int32Array[], private readonly o: KfacStreamOptions) {
    ({ T: this.T, k: this.k, batch: this.batch } = checkKfacInput(model, seqs, o));
    const all = model.prunableLayers();
    o.passes.forEach((p, i) => { for (const l of p) this.byLayer.set(l, i); });
    this.linears = o.passes.map((p) => all.filter((L) => p.includes(L.layer)));
    if (o.streamed) {
      let top = model.config.numLayers;
      for (const p of o.passes) {
        const { lo, hi } = rangeOf(p);
        if (hi !== top) throw new ShapeError(`kfac stream: streamed passes must run top-down over adjacent ranges (a pass ends at layer ${hi - 1}, the previous began at ${top})`);
        top = lo;
      }
    }
  }

  private hold(bytes: number): void {
    this.hostBytes += bytes;
    this.peakHostBytes = Math.max(this.peakHostBytes, this.hostBytes);
  }

  /** The factors of `names` (all in one pass), running that pass when it is first asked for. */
  async factors(names: readonly string[], run: Run): Promise<Map<string, KfacResult>> {
    const layers = this.model.prunableLayers().filter((L) => names.includes(L.name));
    const passes = new Set(layers.map((L) => this.byLayer.get(L.layer)));
    if (passes.size !== 1 || passes.has(undefined)) throw new ShapeError(`kfac stream: linears ${names.join(', ')} are not all in one pass of the schedule`);
    const p = [...passes][0]!;
    if (this.ran.has(p)) return this.unpark(layers);
    this.ran.add(p);
    const all = this.o.streamed ? await this.streamedPass(p, run) : await accumulateKfac(this.ctx, this.model, this.seqs, {
      fisherSamples: this.o.fisherSamples, seed: this.o.seed, batch: this.o.batch, headChunkRows: this.o.headChunkRows,
      linears: this.linears[p].map((L) => L.name), signal: run.signal, onProgress: run.onProgress,
    });
    return this.park(all, this.linears[p], new Set(names));
  }

  /** Keep the asked linears' factors on the GPU, read the others back into the park, free them. */
  private async park(all: Map<string, KfacResult>, layers: readonly PrunableLayer[], asked: ReadonlySet<string>): Promise<Map<string, KfacResult>> {
    const keepA = new Set(layers.filter((L) => asked.has(L.name)).map((L) => L.inputKey));
    const parkedHere = layers.filter((L) => !asked.has(L.name));
    // Freed once every read is queued (a freed buffer may be handed out again at once).
    const freed = new Set<Tensor>();
    for (const L of parkedHere) {
      const f = all.get(L.name)!;
      if (!keepA.has(L.inputKey)) freed.add(f.A);
      freed.add(f.G);
    }
    const reads: Array<Promise<void>> = [];
    // Factors are exactly symmetric (kfacAccumulators mirrors them): the park keeps lower triangles,
    // packed on the GPU in place when the tensor is freed after the read (else on the host).
    const park = (key: string, t: Tensor) => {
      this.users.set(key, (this.users.get(key) ?? 0) + 1);
      if (this.users.get(key) === 1) reads.push(readLowerTriangle(this.ctx, t, freed.has(t)).then((v) => { this.parked.set(key, v); this.hold(v.byteLength); }));
    };
    for (const L of parkedHere) {
      const f = all.get(L.name)!;
      park(`A:${L.inputKey}`, f.A);
      park(`G:${L.name}`, f.G);
    }
    for (const t of freed) t.dispose();
    await Promise.all(reads);
    return new Map([...all].filter(([n]) => asked.has(n)));
  }

  /** Upload parked factors (one A per input among them); a park entry goes once no linear needs it. */
  private unpark(layers: readonly PrunableLayer[]): Map<string, KfacResult> {
    const up = new Map<string, Tensor>();
    const take = (key: string, n: number): Tensor => {
      const v = this.parked.get(key);
      if (!v) throw new ShapeError(`kfac stream: the factor ${key} was already served`);
      let t = up.get(key);
      if (!t) up.set(key, (t = uploadSymmetric(this.ctx, v, n)));
      const left = this.users.get(key)! - 1;
      this.users.set(key, left);
      if (left === 0) { this.parked.delete(key); this.hostBytes -= v.byteLength; }
      return t;
    };
    const N = this.seqs.length * this.T;
    return new Map(layers.map((L) => [L.name, { A: take(`A:${L.inputKey}`, L.C + (L.bias ? 1 : 0)), G: take(`G:${L.name}`, L.R), N }]));
  }

  /** One streamed pass over decoder layers [lo, hi) (see the file comment). */
  private async streamedPass(p: number, run: Run): Promise<Map<string, KfacResult>> {
    const { ctx, model, seqs, T, k } = this;
    const { lo, hi } = rangeOf(this.o.passes[p]);
    const L = model.config.numLayers, top = hi === L, block = blockOf(model);
    const N = seqs.length * T, d = model.config.hiddenSize;
    const acc = kfacAccumulators(ctx, this.linears[p], N, k);
    const draws = kfacDraws(k, false);
    // Inputs the lower passes start from (kept by the top pass), and the gradient this pass hands down.
    const keep = new Set(top ? this.o.passes.slice(p + 1).map((q) => rangeOf(q).lo) : []);
    for (const l of keep) this.xs.set(l, []);
    const dxOut: Float32Array[][] = [];
    const dxIn = this.dx;
    if (!top && (!dxIn || dxIn.at !== hi)) throw new ShapeError(`kfac stream: the pass over layers ${lo}…${hi - 1} needs the gradient at layer ${hi}, which no pass has kept`);
    const xIn = top ? undefined : this.xs.get(lo);
    if (!top && !xIn) throw new ShapeError(`kfac stream: the input of layer ${lo} was not kept`);
    const pace = batchPacer(ctx);
    try {
      for (let s0 = 0, bi = 0; s0 < seqs.length; s0 += this.batch, bi++) {
        run.signal?.throwIfAborted();
        const B = Math.min(this.batch, seqs.length - s0);
        const reads: Array<Promise<void>> = [];
        const keepRead = (t: Tensor, put: (v: Float32Array) => void) => reads.push(t.read().then((v) => { put(v); this.hold(v.byteLength); }));
        const dxs: Float32Array[] = (dxOut[bi] = []);
        const down = (dx: Tensor, di: number) => {
          if (lo > 0) keepRead(dx, (v) => { dxs[di] = v; });
          dx.dispose();
        };
        if (top) {
          const { ids, labels } = uploadBatch(ctx, seqs.slice(s0, s0 + B), T);
          let x = block.embed(ctx, model, ids, T);
          x = forwardLayers(ctx, model, x, B, T, 0, lo, { onLayerInput: (l, xl) => { if (keep.has(l)) keepRead(xl, (v) => { this.xs.get(l)![bi] = v; }); } }).x;
          const r = forwardLayers(ctx, model, x, B, T, lo, L, { save: true, onInput: acc.onInput });
          const f = block.final(ctx, model, r.x, true);
          const fwd = { hf: f.hf, final: f.saved, layers: r.layers };
          draws.forEach((dr, di) => {
            const dTop = headBackward(ctx, model, fwd, labels, T, { sampleSeed: dr.sample ? drawSeed(this.o.seed ?? 0, bi, di) : undefined, headChunkRows: this.o.headChunkRows });
            down(backwardLayers(ctx, model, r.layers, dTop, L, lo, B, T, { onOutputGrad: acc.onOutputGrad }), di);
          });
          f.hf.dispose();
          releaseSaved(f.saved);
          releaseLayers(r.layers);
          ids.dispose();
          labels.dispose();
        } else {
          const x = ctx.upload(xIn![bi], [B * T, d]);
          this.hostBytes -= xIn![bi].byteLength;
          xIn![bi] = SPENT; // the host copy goes as soon as it is on the GPU
          const r = forwardLayers(ctx, model, x, B, T, lo, hi, { save: true, onInput: acc.onInput });
          r.x.dispose(); // the output of layer hi − 1: the pass above has used it already
          draws.forEach((_, di) => {
            const g = dxIn!.v[bi][di];
            const dTop = ctx.upload(g, [B * T, d]);
            this.hostBytes -= g.byteLength;
            down(backwardLayers(ctx, model, r.layers, dTop, hi, lo, B, T, { onOutputGrad: acc.onOutputGrad }), di);
          });
          releaseLayers(r.layers);
          dxIn!.v[bi] = [];
        }
        await pace(Promise.all(reads));
        run.onProgress?.(Math.min(s0 + B, seqs.length), seqs.length);
      }
      await pace();
      const out = acc.results();
      await ctx.sync();
      if (!top) this.xs.delete(lo);
      this.dx = lo > 0 ? { at: lo, v: dxOut } : undefined;
      return out;
    } catch (e) {
      for (const t of acc.owned) t.dispose();
      throw e;
    }
  }

  /** Drop every host array. */
  dispose(): void {
    this.parked.clear();
    this.users.clear();
    this.xs.clear();
    this.dx = undefined;
    this.hostBytes = 0;
  }
}
