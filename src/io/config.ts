/**
 * config.json parsing, by family: the families' own parsers live in src/arch/<family>/config.ts (pure,
 * no GPU) and are found through src/arch/registry.ts by model_type. This module is io's entry point.
 */

import { parseOptFields } from '../arch/opt/config';
import { parseModelConfig } from '../arch/registry';
import type { OptConfig } from '../arch/types';
import { UnsupportedArchitectureError } from './errors';

export { parseModelConfig, familySpec, expectedTensors } from '../arch/registry';
export { expectedOptTensors, canonicalOptName, OPT_POSITION_OFFSET } from '../arch/opt/config';
export { expectedLlamaTensors } from '../arch/llama/config';
export type { ModelConfig, OptConfig, LlamaConfig, BaseConfig, Family, PrunableLayer, RopeScaling, UnitRule } from '../arch/types';

/** Parse a config.json that must be OPT (UnsupportedArchitectureError for another family). */
export function parseOptConfig(json: unknown): OptConfig {
  const c = parseModelConfig(json);
  if (c.family !== 'opt') throw new UnsupportedArchitectureError(`config.json: model_type ${JSON.stringify(c.modelType)} is not OPT`);
  return c;
}

export { parseOptFields };
