import { describe, expect, it } from 'vitest';
import { inverseSeconds } from '../bench/scale-plan';

describe('bench/scale-plan.ts time model', () => {
  it('spdInverse seconds: the measured points, monotone between them, n³ beyond the last', () => {
    expect(inverseSeconds(3072)).toBeCloseTo(0.02517, 8);
    expect(inverseSeconds(8192)).toBeCloseTo(0.18184, 8);
    expect(inverseSeconds(16)).toBe(inverseSeconds(256));
    let prev = 0;
    for (let n = 256; n <= 20000; n += 97) {
      const t = inverseSeconds(n);
      expect(t).toBeGreaterThanOrEqual(prev);
      prev = t;
    }
    expect(inverseSeconds(16384) / inverseSeconds(8192)).toBeCloseTo(8, 8);
  });
});
