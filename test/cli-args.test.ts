/**
 * `llm-surgeon` command line without a GPU: flag parsing, bad arguments → exit 2 with a message naming
 * the argument, --out refusals (non-empty without --force, the --model folder itself), main() dispatch;
 * and the Hugging Face export (buildHfFolder) on small synthetic weights: names, dtype fields, exact
 * zeros after float16 rounding, overflow and mismatch errors.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { version } from '../package.json';
import { parseFlags, UsageError } from '../src/cli/args';
import { main } from '../src/cli/main';
import { pruneCommand } from '../src/cli/prune';
import { parsePruneArgs } from '../src/cli/prune-args';
import { expectedOptTensors, parseOptConfig } from '../src/io/config';
import { buildHfFolder, roundTo } from '../src/io/export';
import { CheckpointFormatError } from '../src/io/errors';
import { loadCheckpoint } from '../src/io/checkpoint';
import { parseSafetensors } from '../src/io/safetensors';
import { rng } from './helpers/rng';

const MODEL = '/work/shared/models/opt-micro';
const CALIB = '/work/shared/data/wikitext-2-raw/wiki.valid.near_raw';
const tmp = mkdtempSync(join(tmpdir(), 'llms-cli-args-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Run a command with stdout/stderr captured. */
async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const so = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (err.push(String(s)), true));
  try {
    const code = await fn();
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    so.mockRestore();
    se.mockRestore();
  }
}

const base = (out: string) => ['--model', MODEL, '--calib', CALIB, '--structure', 'rows-cols', '--sparsity', '0.2', '--out', out];

describe('flag parser', () => {
  it('reads --flag value, --flag=value and switches; rejects unknown, repeated and valueless flags', () => {
    const spec = { '--a': 'string', '--b': 'string', '--on': 'bool' } as const;
    const f = parseFlags(['--a', 'x', '--b=y=z', '--on'], spec) as Map<string, string>;
    expect([...f]).toEqual([['--a', 'x'], ['--b', 'y=z'], ['--on', 'true']]);
    expect(parseFlags(['--a', 'x', '-h'], spec)).toBe('help');
    for (const bad of [['--c', '1'], ['--a', '1', '--a', '2'], ['--a'], ['--a', '--on'], ['word'], ['--on=1']]) {
      expect(() => parseFlags(bad, spec)).toThrow(UsageError);
    }
  });

  it('fills defaults and resolves n:m sparsity', () => {
    const a = parsePruneArgs(base(join(tmp, 'x')));
    if (a === 'help') throw new Error('help');
    expect([a.method, a.nsamples, a.seed, a.shots, a.dtype]).toEqual(['surgeon', 128, 100, undefined, undefined]);
    const nm = parsePruneArgs(['--model', MODEL, '--calib', CALIB, '--structure', '4:8', '--out', 'o']);
    expect(nm !== 'help' && nm.sparsity).toBe(0.5);
    const mag = parsePruneArgs(['--model', MODEL, '--structure', 'element', '--sparsity', '0.3', '--method', 'magnitude', '--out', 'o']);
    expect(mag !== 'help' && mag.calib).toBeUndefined(); // magnitude needs no calibration
  });

  it('--batch sets the K-FAC windows per forward/backward; peers and bad values are refused', () => {
    const a = parsePruneArgs([...base(join(tmp, 'x')), '--batch', '16']);
    expect(a !== 'help' && a.batch).toBe(16);
    const d = parsePruneArgs(base(join(tmp, 'x')));
    expect(d !== 'help' && d.batch).toBeUndefined();
    expect(() => parsePruneArgs([...base(join(tmp, 'x')), '--batch', '0'])).toThrow(UsageError);
    expect(() => parsePruneArgs([...base(join(tmp, 'x')), '--batch', '2.5'])).toThrow(UsageError);
    expect(() => parsePruneArgs(['--model', MODEL, '--calib', CALIB, '--structure', 'element', '--sparsity', '0.5', '--method', 'sparsegpt', '--batch', '4', '--out', 'o'])).toThrow(/--batch does not apply/);
  });

  it('--memory-budget takes a size with an optional unit; bad sizes are refused', () => {
    const sized = (v: string) => {
      const a = parsePruneArgs([...base(join(tmp, 'x')), '--memory-budget', v]);
      return a !== 'help' && a.memoryBudget;
    };
    expect(sized('4GiB')).toBe(4 * 2 ** 30);
    expect(sized('512mib')).toBe(512 * 2 ** 20);
    expect(sized('1.5GB')).toBe(1.5e9);
    expect(sized('1000')).toBe(1000);
    const d = parsePruneArgs(base(join(tmp, 'x')));
    expect(d !== 'help' && d.memoryBudget).toBeUndefined();
    for (const bad of ['0', '-1GiB', '4XB', 'GiB', '1e9', '0.5']) {
      expect(() => parsePruneArgs([...base(join(tmp, 'x')), '--memory-budget', bad]), bad).toThrow(/--memory-budget needs a size such as 4GiB/);
    }
  });

  it('--lora and its options enable LoRA corrections; peers refuse them', () => {
    const none = parsePruneArgs(base(join(tmp, 'x')));
    expect(none !== 'help' && none.lora).toBeUndefined();
    const on = parsePruneArgs([...base(join(tmp, 'x')), '--lora']);
    expect(on !== 'help' && on.lora).toEqual({ rank: undefined, lr: undefined, targets: undefined });
    const opts = parsePruneArgs([...base(join(tmp, 'x')), '--lora-rank', '4', '--lora-lr', '0.001', '--lora-targets', 'all']);
    expect(opts !== 'help' && opts.lora).toEqual({ rank: 4, lr: 0.001, targets: 'all' });
    expect(() => parsePruneArgs([...base(join(tmp, 'x')), '--lora-targets', 'mlp'])).toThrow(/--lora-targets must be one of attention, all/);
    expect(() => parsePruneArgs(['--model', MODEL, '--calib', CALIB, '--structure', 'element', '--sparsity', '0.5', '--method', 'wanda', '--lora', '--out', 'o']))
      .toThrow(/--lora does not apply to --method wanda/);
  });
});

describe('llm-surgeon prune: bad arguments exit with 2 and name the argument', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown structure', ['--structure', 'rows'], /--structure .*rows-cols.*'rows'/],
    ['sparsity 1.5', ['--sparsity', '1.5'], /--sparsity .*\[0, 1\).*'1\.5'/],
    ['sparsity above n/m', ['--structure', '2:4', '--sparsity', '0.6'], /--sparsity 0\.6 exceeds 2:4/],
    ['unknown method', ['--method', 'obs'], /--method must be one of surgeon, kobd, lobd, magnitude, sparsegpt, wanda; got 'obs'/],
    ['bad shots', ['--shots', '0'], /--shots needs an integer ≥ 1, got '0'/],
    ['bad dtype', ['--dtype', 'int8'], /--dtype must be one of/],
    ['unknown flag', ['--sparsty', '0.5'], /unknown argument --sparsty/],
    ['eval option without --eval', ['--eval-windows', '2'], /--eval-windows needs --eval/],
    ['missing calibration file', ['--calib', join(tmp, 'nope.txt')], /--calib .*nope\.txt: no such file/],
  ];
  for (const [what, extra, msg] of cases) {
    it(what, async () => {
      const argv = base(join(tmp, 'never'));
      for (let i = 0; i < extra.length; i += 2) {
        const at = argv.indexOf(extra[i]);
        if (at >= 0) argv[at + 1] = extra[i + 1];
        else argv.push(extra[i], extra[i + 1]);
      }
      const r = await capture(() => pruneCommand(argv));
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
    });
  }

  it('missing --model / --structure / --out / --calib', async () => {
    const drop = (flag: string) => { const a = base(join(tmp, 'never')); a.splice(a.indexOf(flag), 2); return a; };
    for (const flag of ['--model', '--structure', '--out', '--calib']) {
      const r = await capture(() => pruneCommand(drop(flag)));
      expect(r.code).toBe(2);
      expect(r.err).toContain(`${flag} is required`);
    }
  });

  it('refuses a non-empty --out without --force, and the --model folder even with --force', async () => {
    const out = join(tmp, 'full');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'keep.txt'), 'x');
    let r = await capture(() => pruneCommand(base(out)));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--out .*full is not empty .*--force/);
    r = await capture(() => pruneCommand([...base(`${MODEL}/`), '--force']));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--out .* is the --model folder/);
    writeFileSync(join(tmp, 'afile'), 'x');
    r = await capture(() => pruneCommand(base(join(tmp, 'afile'))));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--out .*afile exists and is not a folder/);
  });

  it('arguments that do not fit the model (checked after loading it, before the GPU)', async () => {
    const tiny = join(tmp, 'tiny.txt');
    writeFileSync(tiny, 'Hello world\n');
    let r = await capture(() => pruneCommand([...base(join(tmp, 'never')), '--seqlen', '4096']));
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--seqlen 4096 must be in 2…2048/)]);
    r = await capture(() => pruneCommand(base(join(tmp, 'never')).map((v) => (v === CALIB ? tiny : v))));
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--calib .*tiny\.txt: \d+ tokens are too few for windows of 2048/)]);
    r = await capture(() => pruneCommand([...base(join(tmp, 'never')), '--eval', tiny, '--eval-seqlen', '64']));
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--eval .*tiny\.txt: \d+ tokens hold 0 windows of 64/)]);
    r = await capture(() => pruneCommand(['--model', MODEL, '--calib', CALIB, '--structure', 'rows-cols', '--sparsity', '0.5', '--method', 'wanda', '--out', 'o']));
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--structure rows-cols: --method wanda prunes element or n:m/)]);
    r = await capture(() => pruneCommand(['--model', MODEL, '--calib', CALIB, '--structure', 'element', '--sparsity', '0.5', '--method', 'sparsegpt', '--shots', '3', '--out', 'o']));
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--shots does not apply to --method sparsegpt/)]);
  });

  it('runtime errors exit with 1 and print the error class', async () => {
    const r = await capture(() => pruneCommand(base(join(tmp, 'never')).map((v) => (v === MODEL ? join(tmp, 'no-model') : v))));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ModelSourceError: .*no-model: no such file or folder/);
  });

  it('--help prints the usage and exits 0', async () => {
    const r = await capture(() => pruneCommand(['--help']));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/usage: llm-surgeon prune .*--structure/);
  });
});

describe('llm-surgeon main', () => {
  it('dispatches help, version and rejects unknown commands', async () => {
    let r = await capture(() => main(['--version']));
    expect([r.code, r.out.trim()]).toEqual([0, version]);
    r = await capture(() => main([]));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/prune .*\n.*eval/);
    r = await capture(() => main(['prnue']));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown command 'prnue'/);
    r = await capture(() => main(['eval', '--model', MODEL]));
    expect(r.code).toBe(2);
  });
});

describe('buildHfFolder', () => {
  it('writes canonical names, keeps the config but its dtype, keeps zeros exact in float16, round-trips through loadCheckpoint', async () => {
    const src = await loadCheckpoint(MODEL);
    const raw = src.config.raw;
    const r = rng(3);
    const weights = new Map<string, Float32Array>();
    for (const [name, w] of src.tensors) {
      // a third exact zeros, tiny values (f16 subnormals) and ordinary ones
      weights.set(name, Float32Array.from(w, (v, i) => (i % 3 === 0 ? 0 : i % 7 === 0 ? (r() - 0.5) * 1e-6 : v)));
    }
    for (const dtype of ['float16', 'float32'] as const) {
      const { files } = buildHfFolder(raw, weights, { dtype, extraFiles: { 'vocab.json': new Uint8Array([1, 2, 3]) } });
      expect(Object.keys(files).sort()).toEqual(['config.json', 'model.safetensors', 'vocab.json']);
      const cfg = JSON.parse(new TextDecoder().decode(files['config.json'])) as Record<string, unknown>;
      expect(cfg).toEqual({ ...raw, dtype });
      const st = parseSafetensors(files['model.safetensors']);
      expect(st.metadata.format).toBe('pt');
      const names = [...expectedOptTensors(parseOptConfig(raw)).keys()];
      expect([...st.tensors.keys()].sort()).toEqual(names.slice().sort()); // tied head omitted, as in the source
      for (const t of st.tensors.values()) expect(t.dtype).toBe(dtype === 'float16' ? 'F16' : 'F32');
      const back = await loadCheckpoint({ files });
      for (const [name, w] of weights) {
        const got = back.tensors.get(name)!, want = roundTo(w, dtype);
        let diff = 0, lostZeros = 0; // plain loops: expect() per element on 3 M values takes a minute
        for (let i = 0; i < w.length; i++) {
          if (!Object.is(got[i], want[i])) diff++;
          if (i % 3 === 0 && !Object.is(got[i], 0)) lostZeros++; // zeros stay +0
        }
        expect([name, diff, lostZeros]).toEqual([name, 0, 0]);
      }
    }
  });

  it('rejects missing, extra, mis-sized and overflowing weights', () => {
    const raw = { model_type: 'opt', vocab_size: 8, hidden_size: 4, num_hidden_layers: 1, num_attention_heads: 2, ffn_dim: 8, max_position_embeddings: 6, torch_dtype: 'float16' };
    const w = new Map([...expectedOptTensors(parseOptConfig(raw))].map(([k, s]) => [k, new Float32Array(s.reduce((a, b) => a * b, 1))]));
    const { files, dtype } = buildHfFolder(raw, w);
    expect(dtype).toBe('float16'); // default: the source's dtype
    expect(JSON.parse(new TextDecoder().decode(files['config.json'])).torch_dtype).toBe('float16');
    const bad = (edit: (m: Map<string, Float32Array>) => void, opts = {}) => {
      const m = new Map(w);
      edit(m);
      return () => buildHfFolder(raw, m, opts);
    };
    expect(bad((m) => m.delete('model.decoder.layers.0.fc1.bias'))).toThrow(/missing.*fc1\.bias/);
    expect(bad((m) => m.set('lm_head.weight', new Float32Array(32)))).toThrow(/extra.*lm_head.*tied/);
    expect(bad((m) => m.set('model.decoder.layers.0.fc2.weight', new Float32Array(3)))).toThrow(CheckpointFormatError);
    expect(bad((m) => m.set('model.decoder.layers.0.fc2.bias', Float32Array.of(0, 7e4, 0, 0)))).toThrow(/fc2\.bias\[1\] = 70000 overflows float16/);
    expect(bad((m) => m.set('model.decoder.layers.0.fc2.bias', Float32Array.of(0, 7e4, 0, 0)), { dtype: 'float32' })).not.toThrow();
    expect(() => buildHfFolder(raw, w, { extraFiles: { 'model.safetensors': new Uint8Array(1) } })).toThrow(/clash/);
  });
});
