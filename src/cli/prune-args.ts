/**
 * Command line of `llm-surgeon prune`: flags → checked PruneArgs (every bad value is a UsageError naming
 * its flag), and the file-system checks done before any work (input files exist, --out can be created
 * and written, is empty or --force'd and is not in the --model folder) and the staged write at the end.
 */

import { mkdir, readdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { EXPORT_DTYPES, stageFolder, TOKENIZER_FILES, type ExportDType, type StagedFolder } from '../io/export';
import type { Structure } from '../surgeon/options';
import { checkInputFile, choiceFlag, intFlag, numFlag, parseFlags, sizeFlag, UsageError } from './args';

export const METHODS = ['surgeon', 'kobd', 'lobd', 'magnitude', 'sparsegpt', 'wanda'] as const;
export type CliMethod = (typeof METHODS)[number];

export const PRUNE_USAGE = `usage: llm-surgeon prune --model <dir|zip|url|hub-id> --calib <file> --structure <s> --sparsity <x> --out <dir> [options]
  --model           checkpoint (OPT, Llama, Mistral, Qwen2; safetensors): folder, .zip, base URL or
                    Hugging Face id; only read
  --calib           calibration text (joined like WikiText rows unless --raw) or .json array of token ids
                    (not needed for --method magnitude)
  --structure       rows-cols | element | 2:4 | n:m (e.g. 4:8)
  --sparsity        target fraction of zeros in [0, 1) over the pruned layers' W' (default n/m for n:m)
  --out             output folder (config.json, model.safetensors, tokenizer files, report.json); written
                    beside it first and moved into place at the end
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
  --memory-budget S peak GPU memory for the job, e.g. 4GiB or 512MiB: the job is planned to fit (layer
                    groups per curvature pass, host copies, a smaller automatic --batch; the plan is
                    logged); refused (exit 1, before uploading) naming what would fit when no plan does
  --eval FILE       evaluation text or .json ids: dense and pruned perplexity (ALGORITHM.md §10)
  --eval-windows N  evaluate on the first N windows only (default all)
  --eval-seqlen N   tokens per evaluation window (default max_position_embeddings)
  --eval-every-shot also evaluate after every shot (report.json shots[].ppl)
  --compact         rows-cols: remove dead FFN neurons and attention heads physically, so the folder holds
                    the smaller shapes (per-layer widths in config.json compact_layers unless every layer
                    has the same; loadModel and bench/compact_loader.py read both); report.json compaction
  --uniform         rows-cols: every layer keeps the same FFN width (each its own cheapest neurons), so
                    --compact writes a stock config (ffn_dim / intermediate_size) that transformers loads
  --uniform-heads   with --uniform: also the same number of heads / kv groups per layer, attention pruned
                    by whole kv groups (Llama family; OPT's stock config cannot drop heads)
  --dtype D         float32 (default, exact) | float16 | bfloat16 weights in model.safetensors
  --raw             use text files as they are instead of joining WikiText rows
  --force           write into a non-empty --out (replaces our files, removes stale weight files)
  --quiet           no progress on stderr
exit codes: 0 ok, 1 runtime error, 2 bad arguments, 130 interrupted (Ctrl-C or SIGTERM; --out is left as it was)`;

const FLAGS = {
  '--model': 'string', '--calib': 'string', '--structure': 'string', '--sparsity': 'string', '--out': 'string',
  '--shots': 'string', '--method': 'string', '--nsamples': 'string', '--seqlen': 'string', '--seed': 'string', '--batch': 'string',
  '--fisher-samples': 'string', '--damping-g': 'string', '--damping-a': 'string', '--max-correlate': 'string',
  '--max-chunk': 'string', '--eval': 'string', '--eval-windows': 'string', '--eval-seqlen': 'string',
  '--eval-every-shot': 'bool', '--lora': 'bool', '--lora-rank': 'string', '--lora-lr': 'string', '--lora-targets': 'string',
  '--dtype': 'string', '--memory-budget': 'string', '--raw': 'bool', '--force': 'bool', '--quiet': 'bool', '--blocksize': 'string',
  '--compact': 'bool', '--uniform': 'bool', '--uniform-heads': 'bool',
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
  /** --compact (physically smaller export), --uniform, --uniform-heads (equal widths per layer). */
  compact: boolean; uniform: boolean; uniformHeads: boolean;
}

/** --compact / --uniform / --uniform-heads need whole units removed (rows-cols) and somewhere to write. */
function checkShapeFlags(f: Map<string, string>, structure: Structure): void {
  if (f.has('--uniform-heads') && !f.has('--uniform')) throw new UsageError('--uniform-heads needs --uniform (equal head counts constrain a uniform prune)');
  for (const flag of ['--compact', '--uniform', '--uniform-heads']) {
    if (f.has(flag) && structure !== 'rows-cols') {
      throw new UsageError(`${flag} needs --structure rows-cols: ${structure} zeroes single weights, which removes no whole FFN neuron or head, so no shape would change`);
    }
  }
  if (f.has('--compact') && !f.get('--out')) throw new UsageError('--compact needs --out, the folder the compact model is written to');
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
  checkShapeFlags(f, structure);
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
    compact: f.has('--compact'), uniform: f.has('--uniform'), uniformHeads: f.has('--uniform-heads'),
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

// Weight files a loader could pick up instead of ours; removed from a --force'd --out at the commit.
const STALE = /(\.safetensors|\.safetensors\.index\.json|^pytorch_model.*\.bin)$/;
// Names we write: removed first so a hard or symbolic link there can never carry our bytes into another file.
const OURS = new Set<string>(['config.json', 'model.safetensors', 'report.json', ...TOKENIZER_FILES]);
// Kernel file systems: writes there fail late or never return (a mkdir under /proc hangs).
const SYSTEM_ROOTS = ['/proc', '/sys'];

function refuseSystem(p: string, out: string): void {
  const root = SYSTEM_ROOTS.find((r) => p === r || p.startsWith(`${r}/`));
  if (root) throw new UsageError(`--out ${out} is under ${root}, a kernel file system; choose a folder on a disk`);
}

const errText = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/**
 * Can a folder `name` be made in `dir` and written into? Creates it with a probe file and removes both
 * (`name` undefined: a hidden probe folder). Returns the error code, or undefined when it can.
 */
async function probe(dir: string, name?: string): Promise<string | undefined> {
  const p = join(dir, name ?? `.llm-surgeon-probe-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  try {
    await mkdir(p);
  } catch (e) {
    return errText(e);
  }
  try {
    await writeFile(join(p, '.probe'), 'llm-surgeon');
    await rm(join(p, '.probe'));
    return undefined;
  } catch (e) {
    return errText(e);
  } finally {
    await rm(p, { recursive: true, force: true });
  }
}

/** Can a file be written in the existing folder `dir`? The error code, or undefined. */
async function probeFile(dir: string): Promise<string | undefined> {
  const p = join(dir, `.llm-surgeon-probe-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  try {
    await writeFile(p, 'llm-surgeon');
    return undefined;
  } catch (e) {
    return errText(e);
  } finally {
    await rm(p, { force: true });
  }
}

/** Runs whose export is staged inside an existing --out (its parent is not writable) rather than beside it. */
const stageWithin = new WeakSet<PruneArgs>();

/**
 * `writing` false (before any work): the input files exist (a .json parses), --out is not under /proc
 * or /sys, not at or inside the --model folder, not a file or under one, empty unless --force, and can
 * be created and written (probed). `writing` true: the staging folder the export is written into;
 * its commit() moves it into --out, replacing stale weight files and the files we write (so no link
 * there leads elsewhere) and nothing else.
 */
export async function prepareOut(a: PruneArgs, writing: false): Promise<void>;
export async function prepareOut(a: PruneArgs, writing: true): Promise<StagedFolder>;
export async function prepareOut(a: PruneArgs, writing: boolean): Promise<StagedFolder | void> {
  if (writing) return stageFolder(a.out, { replace: (name) => STALE.test(name) || OURS.has(name), last: 'report.json', within: stageWithin.has(a) });
  for (const [flag, p] of [['--calib', a.calib], ['--eval', a.eval]] as const) if (p) await checkInputFile(flag, p);
  const abs = resolve(a.out);
  refuseSystem(abs, a.out);
  // The nearest existing folder on the way to --out, and the names still to be created below it.
  let base = abs;
  const missing: string[] = [];
  let st = await stat(base).catch(() => undefined);
  while (!st) {
    missing.unshift(basename(base));
    base = dirname(base);
    st = await stat(base).catch(() => undefined);
  }
  if (!st.isDirectory()) {
    throw new UsageError(missing.length ? `--out ${a.out}: ${base} is a file, so no folder can be created under it` : `--out ${a.out} exists and is not a folder`);
  }
  const realBase = await realpath(base);
  const real = join(realBase, ...missing);
  refuseSystem(real, a.out);
  // At or under the model folder (which includes the nested folder a checkpoint load may descend into).
  if ((await stat(a.model).catch(() => undefined))?.isDirectory()) {
    const model = await realpath(a.model);
    if (real === model) throw new UsageError(`--out ${a.out} is the --model folder; the input model is never overwritten`);
    if (real.startsWith(model.endsWith(sep) ? model : model + sep)) throw new UsageError(`--out ${a.out} is inside the --model folder ${a.model}; the input folder is never written to`);
  }
  const refuse = (where: string, code: string) => new UsageError(`--out ${a.out}: cannot create or write files in ${where} (${code}); choose a writable folder`);
  if (missing.length) {
    // The first folder to create, made and removed again: the rest are created inside it.
    const code = await probe(realBase, missing[0]);
    if (code) throw refuse(realBase, code);
    return;
  }
  const entries = await readdir(abs);
  if (entries.length && !a.force) throw new UsageError(`--out ${a.out} is not empty (${entries.length} entries); pass --force to write into it`);
  const parentCode = await probe(dirname(real));
  const outCode = entries.length || parentCode ? await probeFile(real) : undefined;
  if (outCode) throw refuse(real, outCode);
  if (parentCode) stageWithin.add(a); // a read-only parent: stage inside --out, commit file by file
}
