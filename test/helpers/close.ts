import { expect } from 'vitest';

/** Fails with the worst entry unless |got − ref| ≤ atol + rtol·|ref| everywhere (a NaN in got always fails). */
export function expectClose(name: string, got: Float32Array, ref: Float64Array, atol: number, rtol: number): void {
  expect(got.length).toBe(ref.length);
  let worst = -Infinity, at = -1;
  for (let i = 0; i < ref.length; i++) {
    const r = Number.isNaN(got[i]) ? Infinity : Math.abs(got[i] - ref[i]) - (atol + rtol * Math.abs(ref[i]));
    if (r > worst) { worst = r; at = i; }
  }
  if (worst > 0) expect.fail(`${name}[${at}] = ${got[at]}, reference ${ref[at]} (atol ${atol}, rtol ${rtol})`);
}

/** Relative Frobenius error ‖a − b‖ / ‖b‖. */
export function relFro(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}
