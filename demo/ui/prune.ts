/**
 * The prune part of the page: settings → a job in the worker (client.prune) with live progress, a
 * cancel button (AbortSignal → the worker's job aborts between steps), a resume button (the job
 * checkpoints every shot to OPFS; resuming continues from the last saved shot with the same settings),
 * optional LoRA corrections between shots (multi-shot methods except magnitude), the per-shot tables
 * (dense vs pruned perplexity; LoRA steps, loss before → after, time), text generated before and after pruning,
 * and after a structured prune the compact model's readout (ui/compact.ts).
 */

import type { SurgeonClient } from '../../src/api/client';
import type { PruneJobReport, PruneSettings } from '../../src/api/job';
import type { CheckpointSpec } from '../../src/api/jobstore';
import { describePlan } from '../../src/api/plan';
import { PruneAbortedError } from '../../src/surgeon/options';
import { bytes, pct, seconds } from './format';
import type { ProgressView } from './progress';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const num = (id: string) => Number($<HTMLInputElement>(id).value);
const PEERS = new Set(['sparsegpt', 'wanda']);
/** Methods without the LoRA option here: the one-pass peers (the API refuses it) and magnitude (no curvature, a baseline). */
const NO_LORA = new Set([...PEERS, 'magnitude']);
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
  /** After a structured prune: the compact model's size and generation speed (ui/compact.ts). */
  afterStructured(prompt: string, maxNewTokens: number): Promise<void>;
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
    for (const id of ['method', 'structure', 'sparsity', 'shots', 'nsamples', 'seqlen', 'seed', 'lora', 'lora-rank', 'lora-lr']) $(id).addEventListener('change', () => void this.refreshResume());
    $('method').addEventListener('change', () => this.methodChanged());
    $('lora').addEventListener('change', () => this.loraChanged());
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
      lora: this.loraOn() ? { rank: num('lora-rank'), lr: num('lora-lr') } : undefined,
      checkpoint: PEERS.has(method!) ? undefined : ({ opfs: DEMO_CHECKPOINT, resume } satisfies CheckpointSpec),
    };
  }

  private methodChanged(): void {
    const peer = PEERS.has($<HTMLSelectElement>('method').value);
    const st = $<HTMLSelectElement>('structure');
    st.querySelector<HTMLOptionElement>('option[value=rows-cols]')!.disabled = peer; // peers prune elements or n:m only
    if (peer && st.value === 'rows-cols') st.value = 'element';
    $<HTMLInputElement>('shots').disabled = peer;
    $<HTMLInputElement>('lora').disabled = NO_LORA.has($<HTMLSelectElement>('method').value);
    this.loraChanged();
  }

  private loraOn(): boolean {
    const box = $<HTMLInputElement>('lora');
    return box.checked && !box.disabled;
  }

  /** Rank and learning rate are editable only while the corrections are on. */
  private loraChanged(): void {
    for (const id of ['lora-rank', 'lora-lr']) $<HTMLInputElement>(id).disabled = !this.loraOn();
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
      const est = await client.estimate({ nsamples: s.calibration!.nsamples!, seqlen: s.calibration!.seqlen!, method: s.method, structure: s.structure, evaluate: { seqlen: s.calibration!.seqlen!, windows: s.evaluate!.windows! }, lora: s.lora && typeof s.lora === 'object' ? { rank: s.lora.rank } : undefined });
      const parts = 'factors' in est ? `K-FAC factors ${bytes(est.factors)}` : `calibration hidden states ${bytes(est.hidden)}, one layer's ${est.method === 'sparsegpt' ? 'Hessians' : 'column norms'} ${bytes(est.statistics)}`;
      const plan = 'plan' in est && est.plan && (est.plan.groups.length > 1 || est.plan.split === 'linear') ? ` Within this page's budget of ${bytes(est.plan.budget ?? 0)}: ${describePlan(est.plan)}.` : '';
      $('estimate').textContent = `Estimated peak GPU memory of this job: ${bytes(est.peak)} (weights ${bytes(est.weights)}, ${parts}).${plan}`;
      const prompt = $<HTMLInputElement>('prompt').value;
      const maxNewTokens = num('gen-tokens');
      if (this.denseText === undefined || $('gen-before').textContent === '—') {
        progress.log('Generating text with the dense model…');
        const g = await client.generate(prompt, { maxNewTokens });
        this.denseText = `${prompt}${g.text}`;
        $('gen-before').textContent = this.denseText;
      }
      const lora = s.lora && typeof s.lora === 'object' ? ` with LoRA corrections (rank ${s.lora.rank}, lr ${s.lora.lr})` : '';
      progress.log(`${resume ? 'Resuming' : 'Pruning'}: ${s.method} ${s.structure} to ${pct(s.sparsity, 0)} in ${s.shots} shot(s)${lora}…`);
      const { report } = await client.prune(s, { onProgress: (p) => this.running && progress.job(p), signal: this.abort.signal });
      this.showShots(report);
      await this.host.refresh(report);
      progress.log('Generating text with the pruned model…');
      const g = await client.generate(prompt, { maxNewTokens });
      $('gen-after').textContent = `${prompt}${g.text}`;
      if (s.structure === 'rows-cols') await this.host.afterStructured(prompt, maxNewTokens);
      const from = report.resumedFromShot ? ` (resumed after shot ${report.resumedFromShot})` : '';
      const loraTime = report.seconds.lora !== undefined ? `; LoRA corrections took ${seconds(report.seconds.lora)}` : '';
      progress.log(`Pruned to ${pct(report.achievedSparsity, 2)} sparsity${from} in ${seconds((performance.now() - t0) / 1000)}; perplexity ${fmt(report.densePerplexity)} → ${fmt(report.shots.at(-1)?.ppl)}${loraTime}.`);
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
    const fill = (id: string, rows: string[][]) => {
      const table = $<HTMLTableElement>(id);
      table.tBodies[0].replaceChildren();
      for (const cells of rows) {
        const row = table.tBodies[0].insertRow();
        for (const c of cells) row.insertCell().textContent = c;
      }
      table.hidden = rows.length === 0;
      return table;
    };
    fill('shot-table', r.shots.map((sh) => {
      const secs = Object.values(sh.seconds).reduce((a, b) => a + b, 0);
      return [`${sh.shot}`, pct(sh.target, 1), pct(sh.achieved, 2), fmt(r.densePerplexity), fmt(sh.ppl), secs ? seconds(secs) : 'saved'];
    }));
    // Loss: mean next-token loss (nats) on the correction's own calibration windows, before and after it.
    const lora = fill('lora-table', r.shots.filter((sh) => sh.lora).map((sh) => [
      `${sh.shot}`, `${sh.lora!.steps}`, sh.lora!.lossBefore.toFixed(4), sh.lora!.lossAfter.toFixed(4), sh.seconds.lora !== undefined ? seconds(sh.seconds.lora) : '—',
    ]));
    lora.caption!.textContent = `LoRA corrections (loss on their training windows)${r.seconds.lora !== undefined ? `: ${seconds(r.seconds.lora)} in all` : ''}`;
  }
}

const fmt = (x?: number): string => (x === undefined ? '—' : x.toFixed(3));
