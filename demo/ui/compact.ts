/**
 * The compact part of the page: after a structured prune, the compact model's size beside the zeroed
 * one's and their generation speed measured in this page (client.compactSpeed: the same prompt and
 * token count, KV cache, in the worker), and "Download compact model" beside the current zip.
 */

import type { SurgeonClient } from '../../src/api/client';
import type { CompactSpeed } from '../../src/api/compact-speed';
import { downloadZip } from './download';
import { bytes, int, pct } from './format';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** The readout (pure, unit-tested): sizes before → after, tokens/s dense vs compact, whether the text agrees. */
export function compactReadout(r: CompactSpeed): string {
  const { dense, compact } = r.tokensPerSecond;
  const widths = `FFN widths ${r.layers.map((l) => l.ffnDim).join('/')}, heads ${r.layers.map((l) => l.numHeads).join('/')}`;
  const text = r.sameTokens ? 'same text' : 'the text differs (f32 rounding of a near-tie)';
  return `Compact model: ${int(r.params.compact)} of ${int(r.params.dense)} parameters (${pct(r.params.compact / r.params.dense)}; ${widths}); ` +
    `weights ${bytes(r.bytes.dense)} → ${bytes(r.bytes.compact)} (f32). Generation in this page (${r.tokens} tokens each, KV cache): ` +
    `${dense.toFixed(1)} tokens/s dense → ${compact.toFixed(1)} tokens/s compact (${(compact / dense).toFixed(2)}×), ${text}.`;
}

export interface CompactHost {
  client: SurgeonClient;
  log(msg: string, kind?: 'info' | 'error'): void;
  describe(e: unknown): string;
  /** File name stem of the download (the model's label). */
  label(): string;
}

export class CompactView {
  constructor(private readonly host: CompactHost) {
    $<HTMLButtonElement>('export-compact').addEventListener('click', () => void this.download());
  }

  /** The weights changed (a new model or job): the readout no longer applies. */
  clear(): void {
    $('export-compact').hidden = true;
    $('compact-info').hidden = true;
  }

  /** Measure and show; a failure is logged, never fails the prune that called it. */
  async measure(prompt: string, maxNewTokens: number): Promise<void> {
    const info = $('compact-info');
    try {
      this.host.log('Measuring generation speed, zeroed dense vs compact…');
      const r = await this.host.client.compactSpeed(prompt, { maxNewTokens });
      const smaller = r.params.compact < r.params.dense;
      info.textContent = smaller ? compactReadout(r) : 'No FFN neuron or head died whole: the compact model would be the dense one.';
      info.hidden = false;
      $('export-compact').hidden = !smaller;
    } catch (e) {
      this.host.log(`Compact model: ${this.host.describe(e)}`, 'error');
    }
  }

  private async download(): Promise<void> {
    try {
      this.host.log('Packing the compact model (dead units removed) as a Hugging Face folder (.zip)…');
      const zip = await this.host.client.exportModel({ compact: true });
      downloadZip(zip, this.host.label(), 'compact');
      this.host.log(`Compact model zip ready (${bytes(zip.byteLength)}).`);
    } catch (e) {
      this.host.log(this.host.describe(e), 'error');
    }
  }
}
