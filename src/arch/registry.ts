/**
 * Families by model_type (transformers.js keeps the same kind of registry): config.json → the family's
 * normalised config, and a config → its FamilySpec. Pure (no GPU): io, the memory estimate and the CLI
 * use it without a device.
 */

import { ConfigError, UnsupportedArchitectureError } from '../io/errors';
import { llamaSpec } from './llama/config';
import { optSpec } from './opt/config';
import type { Family, FamilySpec, ModelConfig } from './types';

const FAMILIES: readonly FamilySpec[] = [optSpec as unknown as FamilySpec, llamaSpec as unknown as FamilySpec];

/** architectures entries each family loads (the causal-LM classes; other heads have other tensors). */
const CLASSES: Record<string, string> = {
  OPTForCausalLM: 'opt', OPTModel: 'opt',
  LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2',
};

const SUPPORTED = FAMILIES.flatMap((f) => f.modelTypes).map((t) => JSON.stringify(t)).join(', ');

function modelTypeOf(raw: Record<string, unknown>): string {
  const mt = raw.model_type ?? undefined;
  const arch = raw.architectures;
  const list = arch === undefined || arch === null ? [] : Array.isArray(arch) ? arch : [arch]; // null: transformers' "not set"
  for (const a of list) {
    const t = typeof a === 'string' ? CLASSES[a] : undefined;
    if (t === undefined) {
      throw new UnsupportedArchitectureError(
        `config.json: architecture ${JSON.stringify(a)} is not supported (${Object.keys(CLASSES).filter((k) => k.endsWith('ForCausalLM')).join(', ')})`,
      );
    }
    if (mt !== undefined && t !== mt) throw new UnsupportedArchitectureError(`config.json: architecture ${JSON.stringify(a)} does not match model_type ${JSON.stringify(mt)}`);
  }
  if (mt !== undefined) {
    if (typeof mt !== 'string' || !FAMILIES.some((f) => f.modelTypes.includes(mt))) {
      throw new UnsupportedArchitectureError(`config.json: model_type ${JSON.stringify(mt)} is not supported (${SUPPORTED})`);
    }
    return mt;
  }
  if (list.length === 0) throw new UnsupportedArchitectureError(`config.json: neither model_type nor architectures is given; cannot tell the model family (${SUPPORTED})`);
  return CLASSES[list[0] as string];
}

/** Validate a config.json (already JSON-parsed) of any supported family. */
export function parseModelConfig(json: unknown): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError('config.json is not a JSON object');
  const raw = json as Record<string, unknown>;
  const mt = modelTypeOf(raw);
  const spec = FAMILIES.find((f) => f.modelTypes.includes(mt))!;
  return spec.parseConfig(raw, mt) as ModelConfig;
}

export function familySpec<C extends ModelConfig>(cfg: C | Family): FamilySpec<C> {
  const fam = typeof cfg === 'string' ? cfg : cfg.family;
  const spec = FAMILIES.find((f) => f.family === fam);
  if (!spec) throw new UnsupportedArchitectureError(`no model family ${JSON.stringify(fam)}`);
  return spec as unknown as FamilySpec<C>;
}

/** Canonical tensor names → shapes of a config. */
export const expectedTensors = (cfg: ModelConfig): Map<string, number[]> => familySpec(cfg).tensors(cfg);

export const prunableLayersOf = (cfg: ModelConfig) => familySpec(cfg).prunableLayers(cfg);
