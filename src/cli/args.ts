/**
 * Shared pieces of the `llm-surgeon` commands: a tiny flag parser (`--flag value`, `--flag=value`,
 * boolean switches), typed value checks that name the flag, and the text → token ids step
 * (WikiText row joining unless raw; a .json file of ids is used as is), with the input checks every
 * command does before loading a model (the file exists, a .json file parses).
 */

import { readFile, stat } from 'node:fs/promises';
import { SurgeonError } from '../errors';
import { DatasetError } from '../io/errors';
import { checkTokenIds, parseTokenIdsJson } from '../io/ids';
import { joinWikitextRows } from '../io/wikitext';

/** A bad command line: the commands print it with their usage and exit with code 2. */
export class UsageError extends SurgeonError {
  static override readonly name: string = 'UsageError';
}

export type FlagKind = 'string' | 'bool';

/**
 * Parse `argv` against `spec` (flag → kind). Returns the raw string values (bool flags: 'true'), or
 * 'help' for -h/--help. Unknown flags, positional words, missing values and repeats are UsageErrors.
 */
export function parseFlags(argv: readonly string[], spec: Record<string, FlagKind>): Map<string, string> | 'help' {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') return 'help';
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument '${a}' (flags start with --)`);
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const kind = spec[flag];
    if (!kind) throw new UsageError(`unknown argument ${flag}`);
    if (out.has(flag)) throw new UsageError(`${flag} given twice`);
    if (kind === 'bool') {
      if (eq > 0) throw new UsageError(`${flag} takes no value`);
      out.set(flag, 'true');
      continue;
    }
    const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
    if (v === undefined || (eq < 0 && v.startsWith('--'))) throw new UsageError(`${flag} needs a value`);
    out.set(flag, v);
  }
  return out;
}

/** A positive integer (≥ min) or a UsageError naming the flag. */
export function intFlag(flag: string, v: string, min = 1): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag} needs an integer ≥ ${min}, got '${v}'`);
  return n;
}

/** A finite number in [lo, hi) (or [lo, hi] when hiInclusive) or a UsageError naming the flag. */
export function numFlag(flag: string, v: string, lo: number, hi: number, hiInclusive = false): number {
  const n = Number(v);
  const ok = v.trim() !== '' && Number.isFinite(n) && n >= lo && (hiInclusive ? n <= hi : n < hi);
  if (!ok) throw new UsageError(`${flag} needs a number in [${lo}, ${hi}${hiInclusive ? ']' : ')'}, got '${v}'`);
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 };

/** A byte count such as 1500000000, 1.5GB, 512MiB or 4GiB (case-insensitive), at least 1 byte. */
export function sizeFlag(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  const n = m && unit ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!(n >= 1 && Number.isSafeInteger(n))) throw new UsageError(`${flag} needs a size such as 4GiB, 512MiB or 1.5GB; got '${v}'`);
  return n;
}

/** One of `choices` or a UsageError listing them. */
export function choiceFlag<T extends string>(flag: string, v: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`${flag} must be one of ${choices.join(', ')}; got '${v}'`);
  return v as T;
}

/**
 * Before any model is loaded: `path` is a file, and a .json file parses as an array (the ids are
 * checked against the vocabulary later, by readIds). UsageErrors name the flag and the file.
 */
export async function checkInputFile(flag: string, path: string): Promise<void> {
  if (!(await stat(path).catch(() => undefined))?.isFile()) throw new UsageError(`${flag} ${path}: no such file`);
  if (!path.endsWith('.json')) return;
  const text = await readFile(path, 'utf8').catch((e: Error) => { throw new UsageError(`${flag} ${path}: cannot read it (${e.message})`); });
  asUsage(flag, () => parseTokenIdsJson(text, path));
}

function asUsage<T>(flag: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof DatasetError) throw new UsageError(`${flag} ${e.message}`);
    throw e;
  }
}

// Share of U+FFFD and control characters (not tab, newline, carriage return) above which a text file
// is called binary or not UTF-8: clean WikiText has none; decoded random bytes are about half.
const NOISE_WARN_SHARE = 0.01;

/** The share of replacement and control characters in `text` (0 for an empty text). */
export function noiseShare(text: string): number {
  let bad = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0xfffd || (c < 0x20 && c !== 9 && c !== 10 && c !== 13) || (c >= 0x7f && c < 0xa0)) bad++;
  }
  return text.length ? bad / text.length : 0;
}

export interface ReadIds {
  ids: Int32Array;
  /** The file holds no text (or an empty array). */
  empty: boolean;
}

/**
 * Token ids of `--flag path`: a .json file must hold an array of token ids (used directly); any other
 * file is joined like WikiText rows (joinWikitextRows; `raw` uses it as is) and encoded by `encoder()`.
 * Every id is checked against `vocabSize` (io/ids.ts); a bad file is a UsageError naming flag, file and
 * index. `warn` gets a line when a text file looks binary.
 */
export async function readIds(
  flag: string, path: string, encoder: () => Promise<(text: string) => number[]>, raw: boolean, vocabSize: number, warn: (msg: string) => void,
): Promise<ReadIds> {
  const text = await readFile(path, 'utf8');
  if (path.endsWith('.json')) {
    const entries = asUsage(flag, () => parseTokenIdsJson(text, path));
    return { ids: asUsage(flag, () => checkTokenIds(entries, vocabSize, path)), empty: entries.length === 0 };
  }
  const noise = noiseShare(text);
  if (noise > NOISE_WARN_SHARE) {
    warn(`${flag} ${path}: ${(noise * 100).toFixed(1)}% of its ${text.length} characters are replacement or control characters; is it a binary file or not UTF-8? (tokenised anyway)`);
  }
  const encode = await encoder();
  const ids = asUsage(flag, () => checkTokenIds(encode(raw ? text : joinWikitextRows(text)), vocabSize, `${path} (tokenised)`));
  return { ids, empty: text.trim() === '' };
}

/** "Name: message" of an error for stderr (the class name always shown, as the exit-code-1 contract says). */
export function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name || 'Error'}: ${e.message}`;
  return `Error: ${String(e)}`;
}
