/**
 * Writes the token-id files the GPU-machine benchmarks read (they travel without the tokenizer):
 *   node dist-node/prepare-data.mjs <tokenizer.json> <wiki.test.raw> <calibration text> <out-dir>
 * test.i32: WikiText-2 test joined per ALGORITHM §10; calib.i32: the calibration text joined the same way
 * (FIXTURES); calib-space.i32: the calibration rows joined with one space, as the authors' loaders join
 * their train split (bench/prune.ts --calib calib-space.i32, to compare against their numbers).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { joinWikitextRows, loadTokenizer } from '../src/io/index';

async function main() {
  const [tokPath, testPath, calibPath, outDir] = process.argv.slice(2);
  const tok = await loadTokenizer(JSON.parse(readFileSync(tokPath, 'utf8')));
  mkdirSync(outDir, { recursive: true });
  for (const [name, path, sep] of [['test', testPath, '\n\n'], ['calib', calibPath, '\n\n'], ['calib-space', calibPath, ' ']]) {
    const ids = Int32Array.from(tok.encode(joinWikitextRows(readFileSync(path, 'utf8'), sep)));
    writeFileSync(`${outDir}/${name}.i32`, Buffer.from(ids.buffer));
    console.log(`${name}: ${ids.length} tokens`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
