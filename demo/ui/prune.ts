/**
 * The prune part of the page: settings → a job in the worker (client.prune) with live progress, a
 * cancel button (AbortSignal → the worker's job aborts between steps), a resume button (the job
 * checkpoints every shot to OPFS; resuming continues from the last saved shot with the same settings),
 * the per-shot perplexity table (dense vs pruned), and text generated before and after pruning.
 */

import type { SurgeonClient } from '../../src/api/client';
import type { PruneJobReport, PruneSettings } from '../../src/api/job';
import type { CheckpointSpec } from '../../src/api/jobstore';
import { PruneAbortedError } from '../../src/surgeon/options';
import { bytes, pct, seconds } from './format';
import type { ProgressView } from './progress';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const num = (id: string) => Number($<HTMLInputElement>(id).value);
const PEERS = new Set(['sparsegpt', 'wanda']);
/** OPFS folder of the demo's job checkpoint (one job at a time). */
export const DEMO_CHECKPOINT = 'demo-job';

export interface PruneHost {
  client: SurgeonClient;
  progress: ProgressView;
  text(): string;
  describe(e: unknown): string;
  /** Called when a job starts (true) and ends (false): the page disables its other controls. */
  setBusy(busy: boolean): void;
  /** Redraw the sparsity chart and anything else that shows the current weights. */
  refresh(report?: PruneJobReport): Promise<void>;
}

export class PruneController {
  private abort?: AbortController;
  private denseText?: string;
  running = false;

  constructor(private readonly host: PruneHost) {
    $<HTMLFormElement>('prune-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.run(false);
    });
    $<HTMLButtonElement>('resume').addEventListener('click', () => void this.run(true));
    $<HTMLButtonElement>('cancel').addEventListener('click', () => {
      this.abort?.abort();
      host.progress.log('Cancelling after the current step…');
    });
    for (const id of ['method', 'structure', 'sparsity', 'shots', 'nsamples', 'seqlen', 'seed']) $(id).addEventListener('change', () => void this.refreshResume());
    $('method').addEventListener('change', () => this.methodChanged());
  }

  /** A new model was loaded: forget the dense sample text. */
  modelChanged(): void {
    this.denseText = undefined;
    void this.refreshResume();
  }

  settings(resume: boolean): PruneSettings {
    const method = $<HTMLSelectElement>('method').value as PruneSettings['method'];
    const seqlen = num('seqlen');
    const text = this.host.text();
    return {
      method,
      structure: $<HTMLSelectElement>('structure').value as PruneSettings['structure'],
      sparsity: num('sparsity'),
      shots: num('shots'),
      calibration: { text, nsamples: num('nsamples'), seqlen, seed: num('seed') },
      evaluate: { text, seqlen, windows: num('eval-windows') },
      checkpoint: PEERS.has(method!) ? undefined : ({ opfs: DEMO_CHECKPOINT, resume } satisfies CheckpointSpec),
    };
  }

  private methodChanged(): void {
    const peer = PEERS.has($<HTMLSelectElement>('method').value);
    const st = $<HTMLSelectElement>('structure');
    st.querySelector<HTMLOptionElement>('option[value=rows-cols]')!.disabled = peer; // peers prune elements or n:m only
    if (peer && st.value === 'rows-cols') st.value = 'element';
    $<HTMLInputElement>('shots').disabled = peer;
  }

  /** Enable Resume when the OPFS checkpoint holds an unfinished job of the loaded model. */
  async refreshResume(): Promise<void> {
    const b = $<HTMLButtonElement>('resume');
    if (this.running) return;
    const info = await this.host.client.checkpointInfo({ opfs: DEMO_CHECKPOINT }).catch(() => null);
    const open = !!info && info.shotsDone < info.shots && !PEERS.has($<HTMLSelectElement>('method').value);
    b.disabled = !open;
    b.textContent = open ? `Resume (from shot ${info!.shotsDone + 1} of ${info!.shots})` : 'Resume';
  }

  private async run(resume: boolean): Promise<void> {
    if (this.running) return;
    const { client, progress } = this.host;
    const s = this.settings(resume);
    this.running = true;
    this.host.setBusy(true);
    $<HTMLButtonElement>('resume').disabled = true;
    const cancel = $<HTMLButtonElement>('cancel');
    cancel.disabled = false;
    this.abort = new AbortController();
    const t0 = performance.now();
    try {
      const est = await client.estimate({ nsamples: s.calibration!.nsamples!, seqlen: s.calibration!.seqlen!, method: s.method, structure: s.structure, evaluate: { seqlen: s.calibration!.seqlen!, windows: s.evaluate!.windows! } });
      $('estimate').textContent = `Estimated peak GPU memory of this job: ${bytes(est.peak)} (weights ${bytes(est.weights)}, K-FAC factors ${bytes(est.factors)}).`;
      const prompt = $<HTMLInputElement>('prompt').value;
      const maxNewTokens = num('gen-tokens');
      if (this.denseText === undefined || $('gen-before').textContent === '—') {
        progress.log('Generating text with the dense model…');
        const g = await client.generate(prompt, { maxNewTokens });
        this.denseText = `${prompt}${g.text}`;
        $('gen-before').textContent = this.denseText;
      }
      progress.log(`${resume ? 'Resuming' : 'Pruning'}: ${s.method} ${s.structure} to ${pct(s.sparsity, 0)} in ${s.shots} shot(s)…`);
      const { report } = await client.prune(s, { onProgress: (p) => this.running && progress.job(p), signal: this.abort.signal });
      this.showShots(report);
      await this.host.refresh(report);
      progress.log('Generating text with the pruned model…');
      const g = await client.generate(prompt, { maxNewTokens });
      $('gen-after').textContent = `${prompt}${g.text}`;
      const from = report.resumedFromShot ? ` (resumed after shot ${report.resumedFromShot})` : '';
      progress.log(`Pruned to ${pct(report.achievedSparsity, 2)} sparsity${from} in ${seconds((performance.now() - t0) / 1000)}; perplexity ${fmt(report.densePerplexity)} → ${fmt(report.shots.at(-1)?.ppl)}.`);
      progress.idle('done');
    } catch (e) {
      progress.idle(e instanceof PruneAbortedError ? 'cancelled' : 'failed');
      const info = await client.checkpointInfo({ opfs: DEMO_CHECKPOINT }).catch(() => null);
      const saved = info ? ` ${info.shotsDone} of ${info.shots} shots are saved; Resume continues from there.` : '';
      progress.log(e instanceof PruneAbortedError ? `Cancelled.${saved}` : `${this.host.describe(e)}${saved}`, e instanceof PruneAbortedError ? 'info' : 'error');
      await this.host.refresh().catch(() => undefined);
    } finally {
      this.running = false;
      cancel.disabled = true;
      this.abort = undefined;
      this.host.setBusy(false);
      await this.refreshResume();
    }
  }

  private showShots(r: PruneJobReport): void {
    const table = $<HTMLTableElement>('shot-table');
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const sh of r.shots) {
      const secs = Object.values(sh.seconds).reduce((a, b) => a + b, 0);
      const row = body.insertRow();
      for (const c of [`${sh.shot}`, pct(sh.target, 1), pct(sh.achieved, 2), fmt(r.densePerplexity), fmt(sh.ppl), secs ? seconds(secs) : 'saved']) row.insertCell().textContent = c;
    }
    table.hidden = false;
  }
}

const fmt = (x?: number): string => (x === undefined ? '—' : x.toFixed(3));
