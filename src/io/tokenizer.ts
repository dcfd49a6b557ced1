/**
 * tokenizer.json → encode/decode through @huggingface/tokenizers (pure JS; imported lazily so the
 * library loads without it until a tokenizer is needed). OPT's post-processor prepends `</s>` (id 2),
 * exactly as transformers does: "Hello world" → [2, 31414, 232].
 */

import { TokenizerError } from './errors';

export interface TextTokenizer {
  /** Token ids including the special tokens the post-processor adds (OPT: a leading </s>). */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; special tokens are skipped unless skipSpecialTokens is false. */
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
}

/** `json`: parsed tokenizer.json; `config`: parsed tokenizer_config.json (optional). */
export async function loadTokenizer(json: unknown, config?: unknown): Promise<TextTokenizer> {
  if (typeof json !== 'object' || json === null || !('model' in json)) {
    throw new TokenizerError('tokenizer.json is not a tokenizer object (no "model" field)');
  }
  const { Tokenizer } = await import('@huggingface/tokenizers');
  let tok: InstanceType<typeof Tokenizer>;
  try {
    tok = new Tokenizer(json, (config as object | undefined) ?? {});
  } catch (e) {
    throw new TokenizerError(`cannot build a tokenizer from tokenizer.json: ${(e as Error).message}`);
  }
  return {
    encode: (text, opts) => tok.encode(text, { add_special_tokens: opts?.addSpecialTokens ?? true }).ids,
    decode: (ids, opts) => tok.decode(ids, { skip_special_tokens: opts?.skipSpecialTokens ?? true }),
  };
}
