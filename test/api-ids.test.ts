/**
 * Token ids given to the public API go through the one check of io/ids.ts: evaluate() and prune()
 * refuse ids outside 0…vocab − 1 (2³² + 5 is not wrapped to 5) with a DatasetError naming the entry,
 * before any GPU work on the model.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DatasetError, evaluate, loadModel, prune, type HostModel } from '../src/index';
import { gpu } from './helpers/gpu';

let model: HostModel;
beforeAll(async () => {
  await gpu();
  model = await loadModel(join(import.meta.dirname, '..', 'demo/public/models/opt-micro'));
});

describe('token ids through the API', () => {
  const bad = [2, 100, 4294967301, 7, ...Array.from({ length: 300 }, (_, i) => i)];
  it('evaluate() refuses an id ≥ 2^32 instead of wrapping it', async () => {
    await expect(evaluate(model, { ids: bad, seqlen: 16 })).rejects.toThrow(DatasetError);
    await expect(evaluate(model, { ids: bad, seqlen: 16 })).rejects.toThrow(/entry 2 is 4294967301, outside 0…50271/);
  });
  it('prune() refuses the same calibration ids', async () => {
    await expect(prune(model, { structure: 'rows-cols', sparsity: 0.2, shots: 1, calibration: { ids: bad, nsamples: 2, seqlen: 16 } })).rejects.toThrow(/4294967301/);
  });
});
