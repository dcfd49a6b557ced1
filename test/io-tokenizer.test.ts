import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DatasetError, TokenizerError } from '../src/io/errors';
import { loadTokenizer } from '../src/io/tokenizer';
import { calibrationWindows, evaluationWindows, joinWikitextRows, PythonRandom } from '../src/io/wikitext';

const MODELS = '/work/shared/models';
const DATA = '/work/shared/data/wikitext-2-raw';
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

const python = (() => {
  try {
    execFileSync('python3', ['-c', 'pass']);
    return true;
  } catch {
    return false;
  }
})();

describe('tokenizer', () => {
  it.each(['opt-micro', 'opt-mini'])('%s: "Hello world" → [2, 31414, 232] (FIXTURES.md) and back', async (m) => {
    const tok = await loadTokenizer(json(`${MODELS}/${m}/tokenizer.json`), json(`${MODELS}/${m}/tokenizer_config.json`));
    const ids = tok.encode('Hello world');
    expect(ids).toEqual([2, 31414, 232]);
    expect(tok.decode(ids)).toBe('Hello world');
    expect(tok.decode(ids, { skipSpecialTokens: false })).toBe('</s>Hello world');
    expect(tok.encode('Hello world', { addSpecialTokens: false })).toEqual(ids.slice(1));
  });

  it('rejects something that is not tokenizer.json', async () => {
    await expect(loadTokenizer({ vocab: {} })).rejects.toBeInstanceOf(TokenizerError);
    await expect(loadTokenizer('nope')).rejects.toBeInstanceOf(TokenizerError);
  });
});

describe('WikiText-2 (ALGORITHM.md §10)', () => {
  it('joined test text is 1,294,336 characters and tokenizes to the 287,645 fixture ids', async () => {
    const text = joinWikitextRows(readFileSync(`${DATA}/wiki.test.raw`, 'utf8'));
    expect(text.length).toBe(1_294_336);
    const tok = await loadTokenizer(json(`${MODELS}/opt-micro/tokenizer.json`));
    const t0 = performance.now();
    const ids = tok.encode(text); // full text, not a prefix: ~1 s on the 2-core CI machine
    console.log(`[tokenize] ${ids.length} ids in ${(performance.now() - t0).toFixed(0)} ms`);
    const ref: number[] = json(`${DATA}/wiki.test.opt-ids.json`);
    expect(ids.length).toBe(287_645);
    expect(ref.length).toBe(287_645);
    let firstDiff = -1;
    for (let i = 0; i < ids.length && firstDiff < 0; i++) if (ids[i] !== ref[i]) firstDiff = i;
    expect(firstDiff).toBe(-1);
    expect(evaluationWindows(ids, 2048).length).toBe(140); // FIXTURES.md: 140 windows of 2048
  });

  it('calibration text joined the same way is 249,240 tokens (FIXTURES.md)', async () => {
    const tok = await loadTokenizer(json(`${MODELS}/opt-mini/tokenizer.json`));
    expect(tok.encode(joinWikitextRows(readFileSync(`${DATA}/wiki.valid.near_raw`, 'utf8'))).length).toBe(249_240);
  });

  it('joins rows: blank lines become empty rows, CRLF is normalised', () => {
    expect(joinWikitextRows(' \n = A = \n \n b c \n')).toBe(['', ' = A = \n', '', ' b c \n'].join('\n\n'));
    expect(joinWikitextRows('x\r\n\r\ny\r\n')).toBe(joinWikitextRows('x\n\ny\n'));
    // the authors' loaders' calibration join (bench comparisons): same rows, one space between them
    expect(joinWikitextRows(' \n = A = \n \n b c \n', ' ')).toBe(['', ' = A = \n', '', ' b c \n'].join(' '));
  });
});

describe('windows', () => {
  const ids = Int32Array.from({ length: 5000 }, (_, i) => (i * 7919) % 50272);

  it('evaluation windows are consecutive, non-overlapping, tail dropped', () => {
    const w = evaluationWindows(ids, 512);
    expect(w.length).toBe(Math.floor(5000 / 512));
    w.forEach((win, k) => expect(win).toEqual(ids.slice(k * 512, (k + 1) * 512)));
    expect(evaluationWindows(Array.from(ids), 512, 3).length).toBe(3);
    expect(() => evaluationWindows(ids, 6000)).toThrow(DatasetError);
  });

  it('calibration windows are seeded slices of the ids', () => {
    const a = calibrationWindows(ids, 16, 256, 100);
    const b = calibrationWindows(Array.from(ids), 16, 256, 100);
    expect(a).toEqual(b);
    expect(calibrationWindows(ids, 16, 256, 101)).not.toEqual(a);
    for (const w of a) {
      expect(w.length).toBe(256);
      const start = ids.indexOf(w[0]); // ids are distinct within 50272, so the start is unique
      expect(start).toBeGreaterThanOrEqual(0);
      expect(start).toBeLessThanOrEqual(5000 - 256 - 1);
      expect(w).toEqual(ids.slice(start, start + 256));
    }
    expect(() => calibrationWindows(ids, 1, 5000, 0)).toThrow(DatasetError);
  });

  it('MT19937 core matches the published reference output (mt19937ar.out, first value)', () => {
    // mt19937ar's test seeds init_by_array({0x123,0x234,0x345,0x456}); CPython seeds an int with its 32-bit words.
    // That key is the integer 0x456_00000345_00000234_00000123 (> 2^53), so it goes through the word-array path.
    const r = PythonRandom.fromKey([0x123, 0x234, 0x345, 0x456]);
    expect(r.nextUint32()).toBe(1067595299);
  });

  it.skipIf(!python)('draws the same start offsets as CPython random.seed(s); random.randint(0, n - seqlen - 1)', () => {
    for (const [seed, n, seqlen, k] of [[100, 249_240, 2048, 128], [0, 5000, 256, 40], [2 ** 40 + 7, 300_000, 17, 50], [3, 1025, 1024, 8]]) {
      const py = JSON.parse(
        execFileSync('python3', ['-c', `import random,json;random.seed(${seed});print(json.dumps([random.randint(0,${n}-${seqlen}-1) for _ in range(${k})]))`], { encoding: 'utf8' }),
      ) as number[];
      const seq = Int32Array.from({ length: n }, (_, i) => i);
      const starts = calibrationWindows(seq, k, seqlen, seed).map((w) => w[0]);
      expect(starts).toEqual(py);
    }
  });
});
