/**
 * Command line of `llm-surgeon prune`: flags → checked PruneArgs (every bad value is a UsageError naming
 * its flag), and the file-system checks done before any work (input files exist, --out is a folder
 * that is empty or --force'd and is not the --model folder) and right before writing.
 */

import { readdir, realpath, rm, stat, mkdir } from 'node:fs/promises';
import { EXPORT_DTYPES, TOKENIZER_FILES, type ExportDType } from '../io/export';
import type { Structure } from '../surgeon/options';
import { choiceFlag, intFlag, numFlag, parseFlags, sizeFlag, UsageError } from './args';

export const METHODS = ['surgeon', 'kobd', 'lobd', 'magnitude', 'sparsegpt', 'wanda'] as const;
export type CliMethod = (typeof METHODS)[number];

export const PRUNE_USAGE = `usage: llm-surgeon prune --model <dir|zip|url|hub-id> --calib <file> --structure <s> --sparsity <x> --out <dir> [options]
  --model           checkpoint (OPT, Llama, Mistral, Qwen2; safetensors): folder, .zip, base URL or
                    Hugging Face id; only read
  --calib           calibration text (joined like WikiText rows unless --raw) or .json array of token ids
                    (not needed for --method magnitude)
  --structure       rows-cols | element | 2:4 | n:m (e.g. 4:8)
  --sparsity        target fraction of zeros in [0, 1) over the pruned layers' W' (default n/m for n:m)
  --out             output folder (config.json, model.safetensors, tokenizer files, report.json)
options:
  --shots N         pruning shots (default 40 for rows-cols, 5 otherwise)
  --method M        surgeon (default) | kobd | lobd | magnitude | sparsegpt | wanda
                    (sparsegpt, wanda: element or n:m, per-layer sparsity, no shots)
  --nsamples N      calibration windows (default 128)
  --seqlen N        tokens per calibration window (default min(2048, max_position_embeddings))
  --seed N          seed of the calibration windows and of sampled Fisher labels (default 100)
  --batch N         calibration windows per K-FAC forward/backward (default: the most, up to 16, that
                    keep the job's estimated peak under 4 GiB or under what it needs anyway; at least
                    ⌊4096 / seqlen⌋); larger is faster on a large GPU and holds more activations
  --fisher-samples K  K sampled-label draws per position (true Fisher); default 0 = empirical Fisher
  --damping-g X     relative damping of G (default 0.01 rows-cols, 0.1 otherwise)
  --damping-a X     relative damping of A (default 0.01); sparsegpt: of H (percdamp, default 0.01)
  --max-correlate N 1 = independent OBS updates; otherwise caps the correlated element chunk
  --max-chunk N     entries per correlated element chunk (default 2000)
  --lora            low-rank first-order corrections between shots (ALGORITHM.md §8; rank 8, attention, lr 1e-4)
  --lora-rank N     adapter rank (implies --lora)
  --lora-lr X       Adam learning rate of the adapters (implies --lora)
  --lora-targets T  attention (default) | all prunable layers (implies --lora)
  --blocksize N     sparsegpt: columns per lazy block (default 128)
  --memory-budget S refuse (exit 1, before uploading) a job whose estimated peak GPU memory exceeds S,
                    e.g. 4GiB or 512MiB, naming what would fit; also caps the automatic --batch
  --eval FILE       evaluation text or .json ids: dense and pruned perplexity (ALGORITHM.md §10)
  --eval-windows N  evaluate on the first N windows only (default all)
  --eval-seqlen N   tokens per evaluation window (default max_position_embeddings)
  --eval-every-shot also evaluate after every shot (report.json shots[].ppl)
  --dtype D         float32 (default, exact) | float16 | bfloat16 weights in model.safetensors
  --raw             use text files as they are instead of joining WikiText rows
  --force           write into a non-empty --out (replaces our files, removes stale weight files)
  --quiet           no progress on stderr
exit codes: 0 ok, 1 runtime error, 2 bad arguments, 130 interrupted (Ctrl-C)`;

const FLAGS = {
  '--model': 'string', '--calib': 'string', '--structure': 'string', '--sparsity': 'string', '--out': 'string',
  '--shots': 'string', '--method': 'string', '--nsamples': 'string', '--seqlen': 'string', '--seed': 'string', '--batch': 'string',
  '--fisher-samples': 'string', '--damping-g': 'string', '--damping-a': 'string', '--max-correlate': 'string',
  '--max-chunk': 'string', '--eval': 'string', '--eval-windows': 'string', '--eval-seqlen': 'string',
  '--eval-every-shot': 'bool', '--lora': 'bool', '--lora-rank': 'string', '--lora-lr': 'string', '--lora-targets': 'string',
  '--dtype': 'string', '--memory-budget': 'string', '--raw': 'bool', '--force': 'bool', '--quiet': 'bool', '--blocksize': 'string',
} as const;

// Flags of the multi-shot LLM Surgeon family that the sequential peers (sparsegpt, wanda) do not have.
const SURGEON_ONLY = ['--shots', '--batch', '--damping-g', '--fisher-samples', '--max-correlate', '--max-chunk', '--eval-every-shot', '--lora', '--lora-rank', '--lora-lr', '--lora-targets'];

export interface PruneArgs {
  argv: string[];
  model: string; calib?: string; structure: Structure; sparsity: number; out: string;
  shots?: number; method: CliMethod; nsamples: number; seqlen?: number; seed: number; batch?: number;
  fisherSamples?: number; dampingG?: number; dampingA?: number; maxCorrelate?: number; maxChunk?: number; blocksize?: number;
  eval?: string; evalWindows?: number; evalSeqlen?: number; evalEveryShot: boolean;
  lora?: { rank?: number; lr?: number; targets?: 'attention' | 'all' };
  dtype?: ExportDType; raw: boolean; force: boolean; quiet: boolean;
  /** Bytes the job's estimated peak GPU memory may reach (--memory-budget). */
  memoryBudget?: number;
}

export function parsePruneArgs(argv: string[]): PruneArgs | 'help' {
  const f = parseFlags(argv, FLAGS);
  if (f === 'help') return f;
  const need = (flag: string) => {
    const v = f.get(flag);
    if (v === undefined || v === '') throw new UsageError(`${flag} is required`);
    return v;
  };
  const int = (flag: string, min = 1) => (f.has(flag) ? intFlag(flag, f.get(flag)!, min) : undefined);
  const num = (flag: string) => (f.has(flag) ? numFlag(flag, f.get(flag)!, 0, Infinity) : undefined);

  const model = need('--model');
  const s = need('--structure');
  let structure: Structure;
  let nmMax: number | undefined;
  if (s === 'rows-cols' || s === 'element') structure = s;
  else {
    const m = /^(\d+):(\d+)$/.exec(s);
    if (!m) throw new UsageError(`--structure must be rows-cols, element, 2:4 or n:m (e.g. 4:8); got '${s}'`);
    const n = Number(m[1]), mm = Number(m[2]);
    if (!(n >= 1 && n < mm && mm <= 32)) throw new UsageError(`--structure ${s}: need 1 ≤ n < m ≤ 32`);
    structure = s as Structure;
    nmMax = n / mm;
  }
  let sparsity: number;
  if (f.has('--sparsity')) sparsity = numFlag('--sparsity', f.get('--sparsity')!, 0, 1);
  else if (nmMax !== undefined) sparsity = nmMax;
  else throw new UsageError('--sparsity is required');
  if (nmMax !== undefined && sparsity > nmMax) throw new UsageError(`--sparsity ${sparsity} exceeds ${s}'s maximum ${nmMax}`);
  const method = f.has('--method') ? choiceFlag('--method', f.get('--method')!, METHODS) : 'surgeon';
  const calib = f.get('--calib');
  if (!calib && method !== 'magnitude') throw new UsageError(`--calib is required for --method ${method}`);
  if (method === 'sparsegpt' || method === 'wanda') {
    if (structure === 'rows-cols') throw new UsageError(`--structure rows-cols: --method ${method} prunes element or n:m structures`);
    const other = SURGEON_ONLY.find((flag) => f.has(flag)) ?? (method === 'wanda' ? ['--damping-a', '--blocksize'].find((flag) => f.has(flag)) : undefined);
    if (other) throw new UsageError(`${other} does not apply to --method ${method}`);
    if (nmMax !== undefined && f.has('--sparsity') && sparsity !== nmMax) throw new UsageError(`--sparsity ${sparsity}: --method ${method} with ${s} always prunes ${nmMax}`);
  } else if (f.has('--blocksize')) throw new UsageError(`--blocksize applies to --method sparsegpt only`);
  const out = need('--out');
  const evalFile = f.get('--eval');
  for (const flag of ['--eval-windows', '--eval-seqlen', '--eval-every-shot']) {
    if (f.has(flag) && !evalFile) throw new UsageError(`${flag} needs --eval`);
  }
  return {
    argv: [...argv], model, calib, structure, sparsity, out,
    shots: int('--shots'), method, nsamples: int('--nsamples') ?? 128, seqlen: int('--seqlen', 2), seed: int('--seed', 0) ?? 100, batch: int('--batch'),
    fisherSamples: int('--fisher-samples', 0), dampingG: num('--damping-g'), dampingA: num('--damping-a'),
    maxCorrelate: int('--max-correlate'), maxChunk: int('--max-chunk'), blocksize: int('--blocksize'),
    eval: evalFile, evalWindows: int('--eval-windows'), evalSeqlen: int('--eval-seqlen', 2), evalEveryShot: f.has('--eval-every-shot'),
    dtype: f.has('--dtype') ? choiceFlag('--dtype', f.get('--dtype')!, EXPORT_DTYPES) : undefined,
    raw: f.has('--raw'), force: f.has('--force'), quiet: f.has('--quiet'),
    memoryBudget: f.has('--memory-budget') ? sizeFlag('--memory-budget', f.get('--memory-budget')!) : undefined,
    lora: ['--lora', '--lora-rank', '--lora-lr', '--lora-targets'].some((flag) => f.has(flag))
      ? {
          rank: int('--lora-rank'),
          lr: f.has('--lora-lr') ? numFlag('--lora-lr', f.get('--lora-lr')!, 0, Infinity) : undefined,
          targets: f.has('--lora-targets') ? choiceFlag('--lora-targets', f.get('--lora-targets')!, ['attention', 'all'] as const) : undefined,
        }
      : undefined,
  };
}

// Weight files a loader could pick up instead of ours; removed from a --force'd --out before writing.
const STALE = /(\.safetensors|\.safetensors\.index\.json|^pytorch_model.*\.bin)$/;
// Names we write: removed first so a hard or symbolic link there can never carry our bytes into another file.
const OURS = new Set<string>(['config.json', 'model.safetensors', 'report.json', ...TOKENIZER_FILES]);

async function sameFolder(a: string, b: string): Promise<boolean> {
  const [ra, rb] = await Promise.all([realpath(a).catch(() => a), realpath(b).catch(() => b)]);
  return ra === rb;
}

/**
 * `writing` false (before any work): the input files exist, --out is not a file, is empty unless
 * --force, and is not the --model folder. `writing` true: create --out and, with --force, remove stale
 * weight files and the files we are about to write (so no link there leads elsewhere).
 */
export async function prepareOut(a: PruneArgs, writing: boolean): Promise<void> {
  const st = await stat(a.out).catch(() => undefined);
  if (!writing) {
    for (const [flag, p] of [['--calib', a.calib], ['--eval', a.eval]] as const) {
      if (p && !(await stat(p).catch(() => undefined))?.isFile()) throw new UsageError(`${flag} ${p}: no such file`);
    }
    if (!st) return;
    if (!st.isDirectory()) throw new UsageError(`--out ${a.out} exists and is not a folder`);
    // The model folder itself, or the single nested folder a checkpoint load descends into.
    const modelSt = await stat(a.model).catch(() => undefined);
    if (modelSt?.isDirectory()) {
      const candidates = [a.model];
      const has = async (d: string) => !!(await stat(`${d}/config.json`).catch(() => undefined));
      if (!(await has(a.model))) {
        for (const e of await readdir(a.model, { withFileTypes: true })) if (e.isDirectory() && (await has(`${a.model}/${e.name}`))) candidates.push(`${a.model}/${e.name}`);
      }
      for (const c of candidates) {
        if (await sameFolder(c, a.out)) throw new UsageError(`--out ${a.out} is the --model folder; the input model is never overwritten`);
      }
    }
    const entries = await readdir(a.out);
    if (entries.length && !a.force) throw new UsageError(`--out ${a.out} is not empty (${entries.length} entries); pass --force to write into it`);
    return;
  }
  await mkdir(a.out, { recursive: true });
  if (st) for (const name of await readdir(a.out)) if (STALE.test(name) || OURS.has(name)) await rm(`${a.out}/${name}`, { force: true });
}
