/** The progress area: phase, shot and layer bars, ETA, and a live status line. */

import type { LoadProgress, ProgressEvent } from '../../src/api/types';
import { bytes, seconds } from './format';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

export class ProgressView {
  private readonly phase = $<HTMLProgressElement>('p-phase');
  private readonly shot = $<HTMLProgressElement>('p-shot');
  private readonly layer = $<HTMLProgressElement>('p-layer');
  private readonly total = $<HTMLProgressElement>('p-total');
  private lastShot?: ProgressEvent['shot'];

  /** A job's progress (prune / evaluate): phase, shot, layer and overall bars, and the ETA. */
  job(p: ProgressEvent): void {
    $('p-phase-name').textContent = p.pass ? `${p.phase} (pass ${p.pass.index}/${p.pass.total})` : p.phase;
    this.phase.value = p.phaseFraction ?? p.fraction;
    this.total.value = p.fraction;
    if (p.shot) this.lastShot = p.shot;
    this.bar(this.shot, 'p-shot-text', p.shot ?? this.lastShot);
    this.bar(this.layer, 'p-layer-text', p.layer);
    if (p.layerName) $('p-layer-text').textContent += ` ${p.layerName.replace('model.decoder.layers.', 'L').replace('self_attn.', '')}`;
    if (p.etaSeconds !== undefined) $('p-eta').textContent = seconds(p.etaSeconds);
  }

  /** Byte progress of a model load, in the model card's bar and the phase bar. */
  load(p: LoadProgress): void {
    const frac = p.total ? p.loaded / p.total : 0;
    const bar = $<HTMLProgressElement>('load-progress');
    if (p.total) bar.value = frac;
    else bar.removeAttribute('value'); // indeterminate: the server sent no length
    const what = p.phase === 'download' ? `reading ${p.file}` : p.loaded === p.total ? 'weights on the GPU' : 'uploading weights to the GPU';
    $('load-text').textContent = `${what}: ${bytes(p.loaded)}${p.total ? ` of ${bytes(p.total)}` : ''}`;
    $('p-phase-name').textContent = `${p.phase}${p.file ? ` ${p.file}` : ''}`;
    this.phase.value = frac;
  }

  idle(text = 'idle'): void {
    $('p-phase-name').textContent = text;
    this.phase.value = 0;
    this.total.value = 0;
    this.lastShot = undefined;
    this.bar(this.shot, 'p-shot-text');
    this.bar(this.layer, 'p-layer-text');
    $('p-eta').textContent = '—';
  }

  log(text: string, kind: 'info' | 'error' = 'info'): void {
    const el = $('log');
    el.textContent = text;
    el.classList.toggle('error', kind === 'error');
  }

  private bar(el: HTMLProgressElement, textId: string, v?: { index: number; total: number }): void {
    el.value = v ? v.index / Math.max(v.total, 1) : 0;
    $(textId).textContent = v ? `${v.index} / ${v.total}` : '—';
  }
}
