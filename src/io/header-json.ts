/**
 * Strict JSON reader for safetensors headers. JSON.parse cannot be used as is: it reads `256.0`, `2.56e2`
 * and `-0` as the integer 256 / 0 where the reference reader (serde) rejects a non-integer literal for an
 * integer field, and it keeps the last of duplicate keys silently. Here: RFC 8259 syntax, a number
 * written with a fraction, an exponent or as `-0` comes back as a JsonFloat (never a plain number),
 * objects have no prototype (a key `__proto__` is an ordinary key), duplicate keys and lone surrogates
 * are errors, nesting is capped. Syntax errors name the character offset.
 */

import { CheckpointFormatError } from './errors';

/** A number literal that is not a plain integer (fraction, exponent or `-0`); `text` is as written. */
export class JsonFloat {
  constructor(
    readonly text: string,
    readonly value: number,
  ) {}
  toJSON(): number {
    return this.value;
  }
  toString(): string {
    return this.text;
  }
}

const MAX_DEPTH = 128; // serde_json's default recursion limit; a header needs 3
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** Parse `text` (already decoded from UTF-8). Errors are CheckpointFormatError('json'), or ('extra') for a tensor named twice. */
export function parseHeaderJson(text: string, file: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new CheckpointFormatError('json', `${file}: header is not valid JSON (${what} at character ${i})`);
  };
  const ws = () => {
    for (let c = text.charCodeAt(i); c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = text.charCodeAt(++i));
  };
  const hex4 = (): number => {
    const h = text.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) fail('bad \\u escape');
    i += 4;
    return parseInt(h, 16);
  };
  const string = (): string => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 0x22) break;
      if (c < 0x20) fail('control character in a string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      const e = text[++i];
      i++;
      if (e === 'u') {
        const u = hex4();
        if (u >= 0xdc00 && u <= 0xdfff) fail('lone surrogate escape');
        if (u >= 0xd800 && u <= 0xdbff) {
          if (text.slice(i, i + 2) !== '\\u') fail('lone surrogate escape');
          i += 2;
          const lo = hex4();
          if (lo < 0xdc00 || lo > 0xdfff) fail('lone surrogate escape');
          out += String.fromCharCode(u, lo);
        } else out += String.fromCharCode(u);
      } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) out += ESCAPES[e];
      else fail('bad escape');
      start = i;
    }
    out += text.slice(start, i);
    i++; // closing quote
    return out;
  };
  const value = (depth: number): unknown => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = Object.create(null);
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a string key');
        const at = i;
        const key = string();
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        const v = value(depth + 1);
        if (Object.hasOwn(obj, key)) {
          i = at;
          if (depth === 0 && key !== '__metadata__') throw new CheckpointFormatError('extra', `${file}: tensor ${JSON.stringify(key)} appears twice in the header`);
          fail(`key ${JSON.stringify(key)} appears twice`);
        }
        obj[key] = v;
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return obj;
        } else fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return arr;
        } else fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail(c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
    i += m[0].length;
    const n = Number(m[0]);
    return m[1] || m[2] || m[0] === '-0' ? new JsonFloat(m[0], n) : n;
  };
  const v = value(0);
  ws();
  if (i < text.length) fail('trailing characters');
  return v;
}
