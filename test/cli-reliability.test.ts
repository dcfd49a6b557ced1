/**
 * `llm-surgeon prune` / `eval` under demanding use: bad inputs are refused before any GPU work with
 * exit 2 and a message naming the file (token ids beyond the vocabulary or 2^32, malformed .json, a
 * missing --text, an empty evaluation file, --nsamples beyond host memory, --dtype float16 on weights it
 * cannot hold, --out under /proc, /sys, a file, the --model folder, or not creatable); binary calibration
 * text warns; a non-finite perplexity exits 1 and writes nothing; an interrupted run says what was
 * changed and exits 130. The export is staged beside --out: SIGTERM, SIGINT and SIGKILL during it
 * (the built CLI, paused by its test-only hook) leave --out as it was.
 * Inputs are opt-micro (a float32 copy where a weight is edited) and tiny files written here.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runPruneJob } from '../src/api/job';
import { evalCommand } from '../src/cli/eval';
import { pruneCommand } from '../src/cli/prune';
import { GpuContext } from '../src/gpu/context';
import { loadCheckpoint } from '../src/io/checkpoint';
import { DatasetError, NonFiniteWeightsError } from '../src/io/errors';
import { buildHfFolder, exportHfFolder, TOKENIZER_FILES } from '../src/io/export';
import { checkTokenIds } from '../src/io/ids';
import { gpu } from './helpers/gpu';

const MODEL = '/work/shared/models/opt-micro';
const IDS = '/work/shared/data/wikitext-2-raw/wiki.test.opt-ids.json';
const tmp = mkdtempSync(join(tmpdir(), 'llms-cli-rel-'));
const at = (name: string) => join(tmp, name);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
// A 20 kB slice of the calibration text (cut at a row end): tokenising all 1.2 MB would take seconds per run.
const CALIB = at('calib.txt');
const calibText = readFileSync('/work/shared/data/wikitext-2-raw/wiki.valid.near_raw', 'utf8');
writeFileSync(CALIB, calibText.slice(0, calibText.indexOf('\n', 20_000) + 1));

/** Run a command with stdout/stderr captured; `onErr` sees every stderr chunk as it is written. */
async function capture(fn: () => Promise<number>, onErr?: (s: string) => void): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const so = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (err.push(String(s)), onErr?.(String(s)), true));
  try {
    return { code: await fn(), out: out.join(''), err: err.join('') };
  } finally {
    so.mockRestore();
    se.mockRestore();
  }
}

/** Runs `fn` and asserts it never created a GPU context (the check came first). */
async function noGpu<T>(fn: () => Promise<T>): Promise<T> {
  const create = vi.spyOn(GpuContext, 'create');
  try {
    return await fn();
  } finally {
    expect(create).not.toHaveBeenCalled();
    create.mockRestore();
  }
}

const prune = (argv: string[], env?: { ctx?: GpuContext }) => capture(() => pruneCommand(argv, env));
const evalCli = (argv: string[], env?: { ctx?: GpuContext }) => capture(() => evalCommand(argv, env));
const base = (out: string, model = MODEL) => ['--model', model, '--calib', CALIB, '--structure', 'element', '--sparsity', '0.3', '--out', out, '--quiet'];

/** A float32 copy of opt-micro with `edit` applied to its weights (the tokenizer files copied). */
async function editedModel(name: string, edit: (t: Map<string, Float32Array>) => void): Promise<string> {
  const src = await loadCheckpoint(MODEL);
  edit(src.tensors);
  const extraFiles = Object.fromEntries(TOKENIZER_FILES.filter((f) => existsSync(join(MODEL, f))).map((f) => [f, readFileSync(join(MODEL, f))]));
  await exportHfFolder(src.config.raw, src.tensors, at(name), { dtype: 'float32', extraFiles });
  return at(name);
}

describe('token ids: one check on every path', () => {
  const big = at('big-ids.json');
  beforeAll(() => writeFileSync(big, JSON.stringify([2, 100, 4294967301, 7])));

  it('checkTokenIds refuses what a wrapping Int32Array copy would change', () => {
    expect([...checkTokenIds([0, 5, 50271], 50272, 'x')]).toEqual([0, 5, 50271]);
    for (const [bad, msg] of [
      [4294967301, /x: entry 1 is 4294967301, outside 0…50271/], [-1, /entry 1 is -1, outside/], [50272, /entry 1 is 50272, outside/],
      [1.5, /entry 1 is 1\.5, not a token id/], [NaN, /entry 1 is NaN, not a token id/], [Infinity, /entry 1 is Infinity/], ['7', /entry 1 is "7" \(a string\)/], [null, /entry 1 is null/],
    ] as const) {
      expect(() => checkTokenIds([3, bad], 50272, 'x'), String(bad)).toThrow(msg);
    }
    expect(() => checkTokenIds(Int32Array.of(1, -4), 10, 'x')).toThrow(DatasetError);
  });

  it('prune and eval refuse an id ≥ 2^32 in a .json file with exit 2, naming file and index, before the GPU', async () => {
    const out = at('never-ids');
    for (const argv of [['--calib', big], ['--eval', big, '--eval-seqlen', '2']]) {
      const args = base(out);
      const i = args.indexOf(argv[0]);
      if (i >= 0) args.splice(i, 2);
      const r = await noGpu(() => prune([...args, ...argv]));
      expect([r.code, r.err]).toEqual([2, expect.stringContaining(`${argv[0]} ${big}: entry 2 is 4294967301, outside 0…50271`)]);
    }
    const e = await noGpu(() => evalCli(['--model', MODEL, '--text', big, '--seqlen', '2']));
    expect([e.code, e.err]).toEqual([2, expect.stringContaining(`--text ${big}: entry 2 is 4294967301, outside 0…50271`)]);
    expect(existsSync(out)).toBe(false);
  });

  it('the API job refuses the same ids (calibration and evaluation) before touching the GPU', async () => {
    const host = await loadCheckpoint(MODEL);
    const noCtx = undefined as unknown as GpuContext; // reached only after the ids are checked
    const ok = Array.from({ length: 200 }, (_, i) => i + 3);
    const job = (cal: number[], ev?: number[]) => runPruneJob(noCtx, host, {
      structure: 'element', sparsity: 0.3, method: 'magnitude', calibration: { ids: cal, nsamples: 2, seqlen: 16 }, evaluate: ev && { ids: ev, seqlen: 16 },
    });
    await expect(job([...ok, 4294967301])).rejects.toThrow(/^calibration ids: entry 200 is 4294967301, outside 0…50271/);
    await expect(job(ok, [...ok.slice(0, 20), -3])).rejects.toThrow(/^evaluate ids: entry 20 is -3, outside/);
    await expect(job([...ok, 2.5])).rejects.toBeInstanceOf(DatasetError);
  });
});

describe('inputs checked first, with the file named (exit 2)', () => {
  it('a malformed ids .json: prune and eval name the file', async () => {
    const bad = at('bad.json');
    writeFileSync(bad, '[1, 2, {oops');
    const r = await noGpu(() => prune(base(at('never-json')).map((v) => (v === CALIB ? bad : v))));
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(new RegExp(`--calib ${bad}: not valid JSON \\(.*\\); expected an array of token ids`))]);
    const obj = at('obj.json');
    writeFileSync(obj, '{"ids": [1, 2]}');
    const e = await noGpu(() => evalCli(['--model', MODEL, '--text', obj]));
    expect([e.code, e.err]).toEqual([2, expect.stringContaining(`--text ${obj}: expected a JSON array of token ids, got an object`)]);
  });

  it('eval --text missing.txt is refused before the model is read', async () => {
    // a model that does not exist either: the text is checked first
    const e = await noGpu(() => evalCli(['--model', at('no-model'), '--text', at('missing.txt')]));
    expect([e.code, e.err]).toEqual([2, expect.stringContaining(`--text ${at('missing.txt')}: no such file`)]);
  });

  it('an empty evaluation file: a message naming the file and the tokens one window needs', async () => {
    const empty = at('empty.txt');
    writeFileSync(empty, '');
    const r = await noGpu(() => prune([...base(at('never-empty')), '--eval', empty, '--eval-seqlen', '64']));
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--eval .*empty\.txt: \d tokens? hold 0 windows of 64 \(the file is empty\); evaluation needs at least 64 tokens \(one window; --eval-seqlen sets its length\)/)]);
    expect(r.err).not.toMatch(/warning/); // the (clean WikiText) calibration was read first, without a warning
    const e = await noGpu(() => evalCli(['--model', MODEL, '--text', empty, '--seqlen', '64']));
    expect([e.code, e.err]).toEqual([2, expect.stringMatching(/--text .*empty\.txt: \d tokens? hold 0 windows of 64 \(the file is empty\); .*--seqlen sets/)]);
    const few = await noGpu(() => evalCli(['--model', MODEL, '--text', IDS, '--seqlen', '2048', '--windows', '1000']));
    expect([few.code, few.err]).toEqual([2, expect.stringMatching(/--text .*: \d+ tokens hold 140 windows of 2048; --windows 1000 needs 2048000 tokens/)]);
  });

  it('--nsamples beyond host memory: HostMemoryError before the windows are built', async () => {
    const t0 = performance.now();
    const r = await noGpu(() => prune([...base(at('never-nsamples')), '--nsamples', '1000000000']));
    expect([r.code, r.err]).toEqual([2, expect.stringMatching(/--nsamples 1000000000 × --seqlen 2048: the calibration windows need about \d+ MiB of host memory, over the \d+ MiB .*; at most \d+ windows of 2048 tokens fit/)]);
    expect(performance.now() - t0).toBeLessThan(10_000);
  });

  it('binary calibration text warns (then fails here for being too short)', async () => {
    const junk = at('junk.txt');
    let x = 7;
    writeFileSync(junk, Uint8Array.from({ length: 600 }, () => (x = (x * 1103515245 + 12345) % 2 ** 31) >>> 23));
    const r = await noGpu(() => prune(base(at('never-junk')).map((v) => (v === CALIB ? junk : v))));
    expect(r.err).toMatch(/warning: --calib .*junk\.txt: [\d.]+% of its \d+ characters are replacement or control characters; is it a binary file or not UTF-8\?/);
    expect(r.err).toMatch(/--calib .*junk\.txt: \d+ tokens are too few for windows of 2048/);
    expect(r.code).toBe(2);
  });
});

describe('--out checked before any work', () => {
  let copy: string;
  beforeAll(() => {
    copy = at('model-copy');
    cpSync(MODEL, copy, { recursive: true });
  });

  it('refuses /proc, /sys, a path under a file, the model folder and folders inside it, an uncreatable name', async () => {
    writeFileSync(at('a-file'), 'x');
    mkdirSync(join(copy, 'nested'));
    const cases: Array<[string, RegExp]> = [
      ['/proc/llms-test-out', /--out \/proc\/llms-test-out is under \/proc, a kernel file system/],
      ['/sys/llms-test-out/x', /--out \/sys\/llms-test-out\/x is under \/sys/],
      [join(at('a-file'), 'sub', 'out'), /: .*a-file is a file, so no folder can be created under it/],
      [join(copy, 'pruned'), /--out .*model-copy\/pruned is inside the --model folder/],
      [join(copy, 'nested', 'deeper', 'out'), /is inside the --model folder/],
      [`${copy}/./`, /is the --model folder/],
      [at('x'.repeat(300)), /--out .*: cannot create or write files in .* \(ENAMETOOLONG\)/],
    ];
    const before = readdirSync(copy).sort();
    for (const [out, msg] of cases) {
      const t0 = performance.now();
      const r = await noGpu(() => prune([...base(out, copy), '--force']));
      expect([out.slice(0, 60), r.code, r.err], r.err).toEqual([out.slice(0, 60), 2, expect.stringMatching(msg)]);
      expect(performance.now() - t0).toBeLessThan(5_000);
    }
    expect(readdirSync(copy).sort()).toEqual(before);
    expect(readdirSync(tmp).filter((f) => f.includes('llm-surgeon-probe') || f.startsWith('xxxx'))).toEqual([]);
  });
});

describe('float16 export range, finite perplexity, interrupted runs', () => {
  it('--dtype float16 on a weight float16 cannot hold: exit 2 naming the tensor and its max magnitude, before the GPU', async () => {
    const m = await editedModel('big-weight', (t) => { t.get('model.decoder.layers.1.fc2.bias')![3] = -1e5; });
    const out = at('never-f16');
    const r = await noGpu(() => prune([...base(out, m), '--dtype', 'float16', '--method', 'magnitude']));
    expect([r.code, r.err]).toEqual([2, expect.stringContaining(
      '--dtype float16: model.decoder.layers.1.fc2.bias holds values up to 100000 in magnitude (first at [3]: -100000), beyond float16\'s largest 65504; use --dtype bfloat16 or float32')]);
    expect(existsSync(out)).toBe(false);
    // the exporter itself never writes a value our loader refuses
    const host = await loadCheckpoint(m);
    host.tensors.get('model.decoder.final_layer_norm.weight')![0] = Infinity;
    expect(() => buildHfFolder(host.config.raw, host.tensors, { dtype: 'float32' })).toThrow(NonFiniteWeightsError);
  });

  it('a perplexity that is not finite exits 1 and writes nothing (prune and eval)', async () => {
    const ctx = await gpu();
    // finite weights whose forward pass overflows: every final hidden state is about 1e30
    const m = await editedModel('overflow', (t) => t.get('model.decoder.final_layer_norm.bias')!.fill(1e30));
    const out = at('never-nan');
    const r = await prune([...base(out, m), '--method', 'magnitude', '--shots', '1', '--eval', IDS, '--eval-seqlen', '64', '--eval-windows', '1'], { ctx });
    expect([r.code, r.err]).toEqual([1, expect.stringMatching(/NonFinitePerplexityError: dense perplexity is (NaN|Infinity): the forward pass overflows/)]);
    expect(existsSync(out)).toBe(false);
    const e = await evalCli(['--model', m, '--text', IDS, '--seqlen', '64', '--windows', '1'], { ctx });
    expect([e.code, e.err]).toEqual([1, expect.stringMatching(/NonFinitePerplexityError: the perplexity is (NaN|Infinity)/)]);
    expect(e.out).toBe('');
  });

  it('interrupted before the first layer: exit 130 and a message that says nothing was pruned', async () => {
    const ctx = await gpu();
    const out = at('never-abort');
    let fired = false;
    // the run's own SIGINT handler, called the moment pruning is announced (no real signal: the worker's handlers stay out of it)
    const r = await capture(
      () => pruneCommand(['--model', MODEL, '--calib', CALIB, '--structure', '2:4', '--method', 'wanda', '--nsamples', '2', '--seqlen', '32', '--out', out], { ctx }),
      (s) => {
        if (fired || !s.includes('pruning: ')) return;
        fired = true;
        (process.listeners('SIGINT').at(-1) as (sig: string) => void)('SIGINT');
      },
    );
    expect(fired).toBe(true);
    expect(r.code, r.err).toBe(130);
    expect(r.err).toContain('llm-surgeon prune: interrupted before any layer was pruned; nothing was written and the input model is untouched');
    expect(r.err).not.toMatch(/partially pruned/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('export staged beside --out: signals during it leave --out as it was (built CLI)', () => {
  const dist = resolve('node_modules/.cache', `llms-cli-reliability-${process.pid}`);
  beforeAll(() => {
    // A private build of the current sources (≈ 1 s) inside the repository, so `webgpu` resolves from node_modules.
    const b = spawnSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '-c', 'vite.node.config.ts', '--outDir', dist, '--emptyOutDir', '--logLevel', 'error'], { encoding: 'utf8' });
    expect(b.status, b.stderr).toBe(0);
  });
  afterAll(() => rmSync(dist, { recursive: true, force: true }));

  /** Spawn a magnitude prune paused before its commit; send `sig` once the export is staged. */
  async function signalled(out: string, sig: NodeJS.Signals, extra: string[] = []): Promise<{ code: number | null; signal: NodeJS.Signals | null; err: string; staged: string }> {
    const child = spawn(process.execPath, [join(dist, 'cli.mjs'), 'prune', '--model', MODEL, '--method', 'magnitude', '--shots', '1', '--structure', 'element', '--sparsity', '0.3', '--out', out, '--quiet', ...extra], {
      env: { ...process.env, LLM_SURGEON_TEST_PAUSE_BEFORE_COMMIT: '60000' }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '', staged = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      err += s;
      const m = /export staged in (\S+); pausing/.exec(err);
      if (m && !staged) {
        staged = m[1];
        child.kill(sig);
      }
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => child.on('exit', (c, s) => res([c, s])));
    return { code, signal, err, staged };
  }

  it('SIGTERM and SIGINT: exit 130, --out not created / a --force\'d --out unchanged, staging removed', async () => {
    const fresh = at('sig-fresh');
    const t = await signalled(fresh, 'SIGTERM');
    expect([t.code, t.staged !== ''], t.err).toEqual([130, true]);
    expect(t.err).toMatch(/interrupted during the export; .*sig-fresh is unchanged/);
    expect(existsSync(fresh)).toBe(false);
    expect(existsSync(t.staged)).toBe(false);

    const old = at('sig-old');
    mkdirSync(old);
    writeFileSync(join(old, 'model.safetensors'), 'old weights');
    writeFileSync(join(old, 'notes.txt'), 'mine');
    const i = await signalled(old, 'SIGINT', ['--force']);
    expect([i.code, i.staged !== ''], i.err).toEqual([130, true]);
    expect(readdirSync(old).sort()).toEqual(['model.safetensors', 'notes.txt']);
    expect(readFileSync(join(old, 'model.safetensors'), 'utf8')).toBe('old weights');
    expect(existsSync(i.staged)).toBe(false);
  });

  it('SIGKILL: --out never exists half-written (the complete export waits in the hidden staging folder)', async () => {
    const out = at('sig-kill');
    const k = await signalled(out, 'SIGKILL');
    expect([k.signal, k.staged !== ''], k.err).toEqual(['SIGKILL', true]);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(k.staged)).toContain('report.json');
    rmSync(k.staged, { recursive: true, force: true });
  });
});
