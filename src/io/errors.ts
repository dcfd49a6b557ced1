/** Typed failures of the io layer (checkpoints, configs, sources, text). io never imports gpu/. */

import { SurgeonError } from '../errors';

export { SurgeonError };

export type CheckpointErrorKind =
  | 'header' // header length or structure (u64 length beyond the file, bad entry fields such as a shape of 256.0, metadata not strings)
  | 'dtype' // a dtype this library does not read (anything but F16, BF16, F32)
  | 'offsets' // data_offsets malformed, out of range, or bytes not covered by any tensor (gaps, trailing bytes)
  | 'overlap' // two tensors share bytes
  | 'truncated' // the file ends before the data the header describes, or right after the 8-byte header length
  | 'shape' // byte length ≠ product(shape)·itemsize, or a shape that disagrees with config.json
  | 'missing' // a tensor (or a required file) the config needs is absent
  | 'extra' // a tensor the config does not know, or the same tensor twice (across shards or within one header)
  | 'json' // a JSON file does not parse; a safetensors header not starting with '{' (byte order mark), a duplicate key
  | 'index'; // model.safetensors.index.json malformed, a shard missing, or the map disagrees with the shards

/** A checkpoint file or folder is malformed or does not match its config. `kind` says which check failed. */
export class CheckpointFormatError extends SurgeonError {
  static override readonly name: string = 'CheckpointFormatError';
  constructor(
    readonly kind: CheckpointErrorKind,
    message: string,
  ) {
    super(`[${kind}] ${message}`);
  }
}

/** config.json is well-formed but asks for something this library does not implement, or holds bad values. */
export class ConfigError extends SurgeonError {
  static override readonly name: string = 'ConfigError';
}

/**
 * The checkpoint's family (model_type / architectures) or one of its config options is not implemented
 * (names it). A ConfigError too, so a caller catching config problems catches this one.
 */
export class UnsupportedArchitectureError extends ConfigError {
  static override readonly name: string = 'UnsupportedArchitectureError';
}

/** A weight is NaN or ±Inf (names the tensor and the flat index of the first bad element). */
export class NonFiniteWeightsError extends SurgeonError {
  static override readonly name: string = 'NonFiniteWeightsError';
  constructor(
    readonly tensor: string,
    readonly index: number,
    readonly value: number,
  ) {
    super(`tensor ${tensor} holds a non-finite value (${value}) at flat index ${index}`);
  }
}

/** A model source cannot be read: HTTP status, network failure, unreadable path, not a zip, unknown source type. */
export class ModelSourceError extends SurgeonError {
  static override readonly name: string = 'ModelSourceError';
}

/** tokenizer.json cannot be turned into a tokenizer. */
export class TokenizerError extends SurgeonError {
  static override readonly name: string = 'TokenizerError';
}

/** Token data cannot provide what was asked (e.g. fewer tokens than one window). */
export class DatasetError extends SurgeonError {
  static override readonly name: string = 'DatasetError';
}
