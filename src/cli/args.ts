/**
 * Shared pieces of the `llm-surgeon` commands: a tiny flag parser (`--flag value`, `--flag=value`,
 * boolean switches), typed value checks that name the flag, and the text → token ids step
 * (WikiText row joining unless raw; a .json file of ids is used as is).
 */

import { readFile } from 'node:fs/promises';
import { SurgeonError } from '../errors';
import { joinWikitextRows } from '../io/wikitext';

/** A bad command line: the commands print it with their usage and exit with code 2. */
export class UsageError extends SurgeonError {}

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
 * Token ids of a text file: a .json file must hold an array of integer ids (used directly); any other
 * file is joined like WikiText rows (joinWikitextRows; `raw` uses it as is) and encoded by `encoder()`.
 */
export async function readIds(path: string, encoder: () => Promise<(text: string) => number[]>, raw: boolean): Promise<number[]> {
  const text = await readFile(path, 'utf8');
  if (path.endsWith('.json')) {
    const ids = JSON.parse(text) as unknown;
    if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x))) throw new SurgeonError(`${path}: expected a JSON array of integer token ids`);
    return ids as number[];
  }
  const encode = await encoder();
  return encode(raw ? text : joinWikitextRows(text));
}

/** "Name: message" of an error for stderr (the class name always shown, as the exit-code-1 contract says). */
export function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name || 'Error'}: ${e.message}`;
  return `Error: ${String(e)}`;
}
