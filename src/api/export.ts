/** A host model as a Hugging Face folder (config.json, model.safetensors, tokenizer files), zipped. */

import { zipSync } from 'fflate';
import { writeSafetensors } from '../io/safetensors';
import type { HostModel } from './job';

export function modelFolder(m: HostModel): Record<string, Uint8Array> {
  const tensors = [...m.tensors].map(([name, data]) => ({ name, dtype: 'F32' as const, shape: [...(m.shapes.get(name) ?? [data.length])], data }));
  const enc = new TextEncoder();
  const cfg: Record<string, unknown> = { ...m.config.raw, dtype: 'float32' };
  delete cfg.torch_dtype;
  const files: Record<string, Uint8Array> = {
    'config.json': enc.encode(JSON.stringify(cfg, null, 2)),
    'model.safetensors': writeSafetensors(tensors, { format: 'pt' }),
  };
  if (m.tokenizerJson) files['tokenizer.json'] = enc.encode(JSON.stringify(m.tokenizerJson));
  if (m.tokenizerConfig) files['tokenizer_config.json'] = enc.encode(JSON.stringify(m.tokenizerConfig));
  return files;
}

/** Zip of modelFolder(m), stored (float weights barely compress, and deflate would cost seconds per 100 MB). */
export function exportZip(m: HostModel): Uint8Array {
  return zipSync(modelFolder(m), { level: 0 });
}
