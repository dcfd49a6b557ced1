/**
 * `llm-surgeon eval --model <dir|url|hub-id> --text <file> [--seqlen N] [--windows N] [--batch N] [--raw]`
 *
 * Perplexity of a checkpoint of any supported family per ALGORITHM.md §10. A text file is joined like
 * WikiText rows (joinWikitextRows; --raw uses it as is) and tokenised with the checkpoint's tokenizer.json;
 * a .json file holding an array of token ids is used directly (e.g. wiki.test.opt-ids.json).
 * The input file is checked before the model is loaded (it exists; a .json file parses), its ids against
 * the model's vocabulary and the windows against its length before the GPU is touched.
 * Prints the perplexity on stdout (progress on stderr) and returns an exit code:
 * 0 ok, 1 failure (message on stderr; a non-finite perplexity is one), 2 bad usage or input.
 */

import { familySpec } from '../arch/registry';
import { GpuContext } from '../gpu/context';
import { loadCheckpoint } from '../io/checkpoint';
import { loadTokenizer } from '../io/tokenizer';
import { perplexity } from '../model/eval';
import { DecoderModel } from '../model/model';
import { checkInputFile, intFlag, parseFlags, readIds, UsageError } from './args';
import { evalWindowCount, finitePerplexity } from './checks';

const USAGE = `usage: llm-surgeon eval --model <dir|url|hub-id> --text <file> [--seqlen N] [--windows N] [--batch N] [--raw]
  --model    checkpoint folder, .zip, base URL or Hugging Face id (OPT, Llama, Mistral, Qwen2; safetensors)
  --text     text file (joined like WikiText rows unless --raw) or .json array of token ids
  --seqlen   tokens per window (default: max_position_embeddings)
  --windows  number of windows from the start (default: all)
  --batch    windows per forward pass (default: 8192 tokens' worth)`;

interface Args { model: string; text: string; seqlen?: number; windows?: number; batch?: number; raw: boolean }

const FLAGS = { '--model': 'string', '--text': 'string', '--seqlen': 'string', '--windows': 'string', '--batch': 'string', '--raw': 'bool' } as const;

function parseArgs(argv: string[]): Args | 'help' {
  const f = parseFlags(argv, FLAGS);
  if (f === 'help') return f;
  const opt = (flag: string) => (f.has(flag) ? intFlag(flag, f.get(flag)!) : undefined);
  const model = f.get('--model'), text = f.get('--text');
  if (!model) throw new UsageError('--model is required');
  if (!text) throw new UsageError('--text is required');
  return { model, text, seqlen: opt('--seqlen'), windows: opt('--windows'), batch: opt('--batch'), raw: f.has('--raw') };
}

/** `env.ctx`: use this GPU context (kept alive afterwards; tests share one) instead of creating one. */
export async function evalCommand(argv: string[], env: { ctx?: GpuContext } = {}): Promise<number> {
  let args: Args | 'help';
  try {
    args = parseArgs(argv);
    if (args !== 'help') await checkInputFile('--text', args.text);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`llm-surgeon eval: ${e.message}\n${USAGE}\n`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let owned: GpuContext | undefined;
  let model: DecoderModel | undefined;
  try {
    const t0 = performance.now();
    const ckpt = await loadCheckpoint(args.model);
    const cfg = ckpt.config;
    const seqlen = args.seqlen ?? cfg.maxPositions;
    if (seqlen < 2 || seqlen > cfg.maxPositions) throw new UsageError(`--seqlen ${seqlen} must be in 2…${cfg.maxPositions} (max_position_embeddings of this model)`);
    const { ids, empty } = await readIds('--text', args.text, async () => {
      if (!ckpt.tokenizerJson) throw new UsageError(`${args.model} has no tokenizer.json; pass a .json file of token ids instead`);
      const tok = await loadTokenizer(ckpt.tokenizerJson, ckpt.tokenizerConfig);
      return (text: string) => tok.encode(text);
    }, args.raw, cfg.vocabSize, (msg) => process.stderr.write(`llm-surgeon eval: warning: ${msg}\n`));
    const input = { flag: '--text', file: args.text, tokens: ids.length, empty, seqlenFlag: '--seqlen', windowsFlag: '--windows' };
    const windows = evalWindowCount(input, seqlen, args.windows);
    const ctx = env.ctx ?? (owned = await GpuContext.create());
    const info = ctx.gpu.info;
    process.stderr.write(`model ${args.model}: ${familySpec(ckpt.config).describe(ckpt.config)}, ${ids.length} tokens; GPU ${info.vendor} ${info.device || info.description}\n`);
    model = await DecoderModel.fromCheckpoint(ctx, ckpt);
    const t1 = performance.now();
    const res = await perplexity(ctx, model, ids, {
      seqlen, windows, batch: args.batch,
      onProgress: (done, total) => process.stderr.write(`\rwindows ${done}/${total}`),
    });
    const t2 = performance.now();
    process.stderr.write('\n');
    finitePerplexity(res.ppl, 'the');
    process.stdout.write(`perplexity ${res.ppl.toFixed(5)} (${res.nll.length} windows of ${seqlen} tokens; eval ${((t2 - t1) / 1000).toFixed(2)} s, load ${((t1 - t0) / 1000).toFixed(2)} s)\n`);
    return 0;
  } catch (e) {
    const err = e as Error;
    if (e instanceof UsageError) {
      process.stderr.write(`llm-surgeon eval: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`llm-surgeon eval: ${err.name === 'Error' ? '' : `${err.name}: `}${err.message}\n`);
    return 1;
  } finally {
    model?.dispose(); // a shared context outlives the command
    owned?.destroy();
  }
}
