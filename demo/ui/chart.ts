/**
 * Per-layer sparsity chart in plain SVG: one group of bars per decoder layer, one bar per module of the
 * model's own family (ModelSummary.moduleTypes: q_proj … fc2 for OPT, q_proj … down_proj for Llama),
 * height = fraction of exact zeros. Includes a text table alternative (visually hidden) for screen readers.
 */

import type { SparsityEntry } from '../../src/api/types';
import { pct } from './format';

const NS = 'http://www.w3.org/2000/svg';
// Okabe–Ito palette: distinguishable with the common colour-vision deficiencies (its yellow is left out:
// too faint on white); seven colours cover Llama's seven linears per layer.
const COLOURS = ['#0072B2', '#56B4E9', '#009E73', '#E69F00', '#D55E00', '#CC79A7', '#000000'];

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** `modules`: the bars of one layer, in order; entries of other modules are left out of the bars. */
export function renderSparsityChart(figure: HTMLElement, entries: SparsityEntry[], caption: string, modules: readonly string[]): void {
  const layers = [...new Set(entries.map((e) => e.layer))].sort((a, b) => a - b);
  const W = 520, H = 220, left = 44, bottom = 34, top = 10, right = 8; // px: fits the results column on a 1366-px laptop
  const plotW = W - left - right, plotH = H - top - bottom;
  const groupW = plotW / Math.max(layers.length, 1);
  const barW = Math.max(2, (groupW * 0.8) / modules.length);
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': caption, class: 'chart' });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const y = top + plotH * (1 - t);
    svg.append(el('line', { x1: left, x2: W - right, y1: y, y2: y, class: 'grid' }));
    svg.append(el('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, pct(t, 0)));
  }
  layers.forEach((layer, li) => {
    const x0 = left + li * groupW + groupW * 0.1;
    modules.forEach((m, mi) => {
      const e = entries.find((x) => x.layer === layer && x.module === m);
      if (!e) return;
      const frac = e.zeros / (e.rows * e.cols);
      const h = Math.max(frac * plotH, frac > 0 ? 1 : 0);
      const rect = el('rect', { 'data-module': m, x: x0 + mi * barW, y: top + plotH - h, width: barW * 0.9, height: h, fill: COLOURS[mi % COLOURS.length] });
      rect.append(el('title', {}, `layer ${layer} ${m}: ${pct(frac, 2)} zeros (${e.rows}×${e.cols})`));
      svg.append(rect);
    });
    svg.append(el('text', { x: x0 + (barW * modules.length) / 2, y: H - bottom + 16, 'text-anchor': 'middle', class: 'tick' }, `L${layer}`));
  });
  svg.append(el('line', { x1: left, x2: W - right, y1: top + plotH, y2: top + plotH, class: 'axis' }));

  const legend = document.createElement('ul');
  legend.className = 'legend';
  modules.forEach((m, i) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = COLOURS[i % COLOURS.length];
    li.append(sw, m);
    legend.append(li);
  });

  const table = document.createElement('table');
  table.className = 'sr-only';
  table.innerHTML = '<thead><tr><th>Layer</th><th>Module</th><th>Zeros</th></tr></thead>';
  const body = table.createTBody();
  for (const e of entries) body.insertRow().append(...[`${e.layer}`, e.module, pct(e.zeros / (e.rows * e.cols), 2)].map((t) => Object.assign(document.createElement('td'), { textContent: t })));

  const cap = document.createElement('figcaption');
  cap.textContent = caption;
  figure.replaceChildren(svg, legend, cap, table);
}
