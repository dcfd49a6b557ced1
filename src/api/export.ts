/** A host model as a Hugging Face folder (config.json, model.safetensors, tokenizer files), zipped. */

import { zipSync } from 'fflate';
import { buildHfFolder } from '../io/export';
import type { HostModel } from './job';

/**
 * `compact`: remove dead FFN neurons / attention heads physically; 'uniform': equal widths in every
 * layer, a stock config (io/export.ts ExportOptions.compact).
 */
export interface FolderOptions { compact?: boolean | 'uniform' }

/** The folder's files in memory, float32 weights (exact), through the same exporter as the CLI. */
export function modelFolder(m: HostModel, opts: FolderOptions = {}): Record<string, Uint8Array> {
  const enc = new TextEncoder();
  const extraFiles: Record<string, Uint8Array> = {};
  if (m.tokenizerJson) extraFiles['tokenizer.json'] = enc.encode(JSON.stringify(m.tokenizerJson));
  if (m.tokenizerConfig) extraFiles['tokenizer_config.json'] = enc.encode(JSON.stringify(m.tokenizerConfig));
  return buildHfFolder(m.config.raw, m.tensors, { dtype: 'float32', extraFiles, compact: opts.compact }).files;
}

/** Zip of modelFolder(m), stored (float weights barely compress, and deflate would cost seconds per 100 MB). */
export function exportZip(m: HostModel, opts: FolderOptions = {}): Uint8Array {
  return zipSync(modelFolder(m, opts), { level: 0 });
}
