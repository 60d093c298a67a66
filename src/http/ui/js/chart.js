// SVG line charts for rates and queue depths: time on x, auto-scaled y, a legend, and a
// hover line that reads out every series at the nearest sample.
import { h, svg, fmtNum } from './dom.js';

/** Series colours (SVG attributes cannot read CSS variables). */
export const C = { c1: '#2f6f5e', c2: '#e0a458', c3: '#5b7fb8', c4: '#b3402f', c5: '#8a5fb3' };

const W = 640;
const H = 200;
const PAD = { left: 46, right: 12, top: 10, bottom: 22 };

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function clock(t) {
  const d = new Date(t);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}:${String(d.getSeconds()).padStart(2, '0')}`;
}

/**
 * series: [{ name, color, points: [[timestampMs, value], ...], current? }] (points in time
 * order; `current` is shown in the legend instead of the last point when given).
 * options: { unit: '/s' | '', spanMs }
 */
export function lineChart(series, options = {}) {
  const all = series.flatMap((s) => s.points);
  const now = all.length ? Math.max(...all.map((p) => p[0])) : Date.now();
  // The window grows with the data (at least a minute) up to spanMs, so a fresh page is not
  // a flat line squeezed against the right edge.
  const first = all.length ? Math.min(...all.map((p) => p[0])) : now;
  const span = Math.min(options.spanMs || 10 * 60 * 1000, Math.max(60 * 1000, now - first));
  const t0 = now - span;
  const top = Math.max(0, ...all.map((p) => p[1]));
  const integral = all.every((p) => Number.isInteger(p[1]));
  const maxV = integral && top <= 4 ? 4 : niceMax(top);
  const x = (t) => PAD.left + ((t - t0) / span) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / maxV) * (H - PAD.top - PAD.bottom);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': options.label || 'chart' });
  const axis = svg('g', { class: 'axis' });
  for (let i = 0; i <= 4; i++) {
    const v = (maxV * i) / 4;
    axis.append(svg('line', { class: 'grid-line', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    axis.append(svg('text', { x: PAD.left - 6, y: y(v) + 3, 'text-anchor': 'end' }, fmtNum(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (span * i) / 4;
    axis.append(svg('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, clock(t)));
  }
  root.append(axis);
  for (const s of series) {
    const pts = s.points.filter((p) => p[0] >= t0);
    if (pts.length === 0) continue;
    if (pts.length === 1) root.append(svg('circle', { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 3, fill: s.color }));
    const d = pts.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    root.append(svg('path', { d, fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-linejoin': 'round' }));
    if (options.area !== false && pts.length > 1) {
      const area = `${d} L${x(pts[pts.length - 1][0]).toFixed(1)},${y(0)} L${x(pts[0][0]).toFixed(1)},${y(0)} Z`;
      root.append(svg('path', { d: area, fill: s.color, opacity: 0.08 }));
    }
  }
  // Hover read-out.
  const cursor = svg('line', { x1: 0, x2: 0, y1: PAD.top, y2: H - PAD.bottom, stroke: '#999', 'stroke-dasharray': '3 3', visibility: 'hidden' });
  const readout = svg('text', { x: PAD.left + 6, y: PAD.top + 12, 'font-size': 11, fill: '#333', visibility: 'hidden' });
  const overlay = svg('rect', { x: PAD.left, y: PAD.top, width: W - PAD.left - PAD.right, height: H - PAD.top - PAD.bottom, fill: 'transparent' });
  overlay.addEventListener('mousemove', (ev) => {
    const box = root.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * W;
    const t = t0 + ((px - PAD.left) / (W - PAD.left - PAD.right)) * span;
    const parts = [];
    for (const s of series) {
      let best;
      for (const p of s.points) if (!best || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
      if (best) parts.push(`${s.name} ${fmtNum(best[1])}${options.unit || ''}`);
    }
    cursor.setAttribute('x1', px);
    cursor.setAttribute('x2', px);
    cursor.setAttribute('visibility', 'visible');
    readout.textContent = `${clock(t)}  ${parts.join('  ')}`;
    readout.setAttribute('visibility', 'visible');
  });
  overlay.addEventListener('mouseleave', () => {
    cursor.setAttribute('visibility', 'hidden');
    readout.setAttribute('visibility', 'hidden');
  });
  root.append(cursor, readout, overlay);
  const legend = h(
    'div.legend',
    series.map((s) => {
      const last = s.current !== undefined ? s.current : s.points.length ? s.points[s.points.length - 1][1] : undefined;
      return h('span', h('i', { style: `background:${s.color}` }), `${s.name} `, h('b', last === undefined ? '–' : `${fmtNum(last)}${options.unit || ''}`));
    }),
  );
  return h('div.chart', root, legend);
}

/** RabbitMQ's samples are cumulative counters, newest first; rates come from neighbours. */
export function ratesFromSamples(samples) {
  const pts = [...(samples || [])].reverse();
  const out = [];
  for (let i = 1; i < pts.length; i++) {
    const dt = (pts[i].timestamp - pts[i - 1].timestamp) / 1000;
    if (dt > 0) out.push([pts[i].timestamp, Math.max(0, (pts[i].sample - pts[i - 1].sample) / dt)]);
  }
  return out;
}

export function levelsFromSamples(samples) {
  return [...(samples || [])].reverse().map((s) => [s.timestamp, s.sample]);
}

/** Client-side history for pages that poll single objects (a queue's depth over time). */
export class Series {
  constructor(limit = 120) {
    this.limit = limit;
    this.points = [];
  }
  push(t, v) {
    this.points.push([t, v]);
    if (this.points.length > this.limit) this.points.shift();
  }
}
