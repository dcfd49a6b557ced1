/**
 * tokenizer.json → encode/decode through @huggingface/tokenizers (pure JS; imported lazily so the
 * library loads without it until a tokenizer is needed). Special tokens come from tokenizer.json's
 * post-processor, as transformers does: OPT prepends `</s>` ("Hello world" → [2, 31414, 232]), the
 * Llama fixtures' (Mistral's) tokenizer prepends `<s>` ([1, 22557, 1526]).
 * tokenizer_config.json's add_bos_token / add_eos_token, when given, override the post-processor as
 * transformers' Llama-style fast tokenizers do (the package ignores them): false drops that token,
 * true adds it (bos_token / eos_token) where the post-processor does not.
 */

import { TokenizerError } from './errors';

export interface TextTokenizer {
  /** Token ids including the special tokens the post-processor adds (OPT: a leading </s>; Llama: <s>). */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; special tokens are skipped unless skipSpecialTokens is false. */
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
}

interface TokLike {
  encode(text: string, o: { add_special_tokens: boolean }): { ids: number[] };
  token_to_id(token: string): number | undefined;
}

/** Special ids the post-processor puts before and after a single sequence (probed on one word). */
function templateOf(tok: TokLike): { prefix: number[]; suffix: number[] } | undefined {
  const full = tok.encode('a', { add_special_tokens: true }).ids;
  const plain = tok.encode('a', { add_special_tokens: false }).ids;
  if (plain.length === 0) return undefined;
  for (let i = 0; i + plain.length <= full.length; i++) {
    if (plain.every((id, k) => full[i + k] === id)) return { prefix: full.slice(0, i), suffix: full.slice(i + plain.length) };
  }
  return undefined;
}

/** bos_token / eos_token of tokenizer_config.json (a string, or an AddedToken object) → its id. */
function specialId(tok: TokLike, cfg: Record<string, unknown>, key: string): number | undefined {
  const v = cfg[key];
  const content = typeof v === 'string' ? v : (v as { content?: unknown } | null)?.content;
  return typeof content === 'string' ? tok.token_to_id(content) : undefined;
}

/** The post-processor's prefix/suffix adjusted to add_bos_token / add_eos_token; undefined when unchanged. */
function specialsFromConfig(tok: TokLike, cfg: Record<string, unknown>): { prefix: number[]; suffix: number[] } | undefined {
  const adjust = (ids: number[], flag: unknown, key: 'bos_token' | 'eos_token'): number[] => {
    if (typeof flag !== 'boolean') return ids;
    const id = specialId(tok, cfg, key);
    const at = key === 'bos_token' ? 0 : ids.length - 1;
    const has = id !== undefined && ids[at] === id;
    if (!flag) return has ? ids.filter((_, i) => i !== at) : ids;
    if (has) return ids;
    if (id === undefined) throw new TokenizerError(`tokenizer_config.json: add_${key} is true but ${key} ${JSON.stringify(cfg[key])} is not a token of tokenizer.json`);
    return key === 'bos_token' ? [id, ...ids] : [...ids, id];
  };
  if (typeof cfg.add_bos_token !== 'boolean' && typeof cfg.add_eos_token !== 'boolean') return undefined;
  const t = templateOf(tok);
  if (!t) return undefined;
  const prefix = adjust(t.prefix, cfg.add_bos_token, 'bos_token');
  const suffix = adjust(t.suffix, cfg.add_eos_token, 'eos_token');
  return prefix.length === t.prefix.length && suffix.length === t.suffix.length ? undefined : { prefix, suffix };
}

/** `json`: parsed tokenizer.json; `config`: parsed tokenizer_config.json (optional). */
export async function loadTokenizer(json: unknown, config?: unknown): Promise<TextTokenizer> {
  if (typeof json !== 'object' || json === null || !('model' in json)) {
    throw new TokenizerError('tokenizer.json is not a tokenizer object (no "model" field)');
  }
  const cfg = typeof config === 'object' && config !== null && !Array.isArray(config) ? (config as Record<string, unknown>) : {};
  const { Tokenizer } = await import('@huggingface/tokenizers');
  let tok: InstanceType<typeof Tokenizer>;
  try {
    tok = new Tokenizer(json, cfg);
  } catch (e) {
    throw new TokenizerError(`cannot build a tokenizer from tokenizer.json: ${(e as Error).message}`);
  }
  const specials = specialsFromConfig(tok, cfg);
  return {
    encode(text, opts) {
      const add = opts?.addSpecialTokens ?? true;
      if (!specials || !add) return tok.encode(text, { add_special_tokens: add }).ids;
      return [...specials.prefix, ...tok.encode(text, { add_special_tokens: false }).ids, ...specials.suffix];
    },
    decode: (ids, opts) => tok.decode(ids, { skip_special_tokens: opts?.skipSpecialTokens ?? true }),
  };
}
