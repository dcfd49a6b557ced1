/**
 * The shared Llama fixtures (FIXTURES.md) as float64 reference models: weights through the library's
 * own loader (src/io loadCheckpoint: fp16 → f32 is exact, f32 → f64 too), config through its
 * normalised LlamaConfig. Only default RoPE is mapped here; the fixtures use no rope_scaling.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadCheckpoint } from '../../src/io/checkpoint';
import type { LlamaRefConfig, RefLlama } from '../../src/reference/llama';

export const SHARED = resolve(import.meta.dirname, '../../../shared');
export const MISTRAL_IDS = `${SHARED}/data/wikitext-2-raw/wiki.test.mistral-ids.json`;

export async function loadRefLlama(folder: string): Promise<RefLlama> {
  const ck = await loadCheckpoint(folder);
  const c = ck.config;
  if (c.family !== 'llama') throw new Error(`${folder}: not a Llama-family checkpoint`);
  if (c.ropeScaling.type !== 'default' || c.oBias || c.mlpBias) throw new Error(`${folder}: rope scaling / o or MLP biases not mapped by this helper`);
  const cfg: LlamaRefConfig = {
    layers: c.numLayers, d: c.hiddenSize, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, ffn: c.ffnDim,
    vocab: c.vocabSize, maxPos: c.maxPositions, eps: c.rmsNormEps, ropeTheta: c.ropeTheta, tied: c.tieWordEmbeddings, qkvBias: c.qkvBias,
  };
  const w = new Map<string, Float64Array>();
  for (const [name, t] of ck.tensors) w.set(name, Float64Array.from(t));
  return { cfg, w };
}

export const mistralTestIds = (): number[] => JSON.parse(readFileSync(MISTRAL_IDS, 'utf8')) as number[];
