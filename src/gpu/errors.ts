/** Typed failures of the GPU layer. Each names the problem so callers (and the worker boundary) can act on it. */

import { SurgeonError } from '../errors';

export { SurgeonError };

/** No WebGPU implementation or no adapter on this machine/browser. */
export class WebGPUUnavailableError extends SurgeonError {
  static override readonly name: string = 'WebGPUUnavailableError';
}

/** The adapter cannot provide a limit that the workload needs. */
export class LimitExceededError extends SurgeonError {
  static override readonly name: string = 'LimitExceededError';
  constructor(
    readonly limit: string,
    readonly needed: number,
    readonly available: number,
    hint = '',
  ) {
    super(`GPU limit ${limit} is ${available}, but ${needed} is needed${hint ? `: ${hint}` : ''}`);
  }
}

/** The GPU device was lost (driver reset, tab backgrounded, out of memory, destroy()). */
export class DeviceLostError extends SurgeonError {
  static override readonly name: string = 'DeviceLostError';
  constructor(readonly reason: string, detail: string) {
    super(`GPU device lost (${reason})${detail ? `: ${detail}` : ''}`);
  }
}

/** A WebGPU validation or out-of-memory error raised by a kernel dispatch. */
export class GpuValidationError extends SurgeonError {
  static override readonly name: string = 'GpuValidationError';
}

/** A kernel was called with arguments it does not support (shapes, dtypes). */
export class ShapeError extends SurgeonError {
  static override readonly name: string = 'ShapeError';
}
