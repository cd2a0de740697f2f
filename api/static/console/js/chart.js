// Live time-series charts on uPlot (vendor/uplot-*, a global loaded before the modules).
//
// A chart starts with history (aggregate buckets: their averages) and then takes live
// points one at a time; a redraw happens at most once per animation frame, and a chart
// keeps at most MAX_POINTS points (the oldest go), so a tab open for hours stays small.
// Each drawn live point is announced as a `console:drawn` event on document (its value
// and the time it was drawn): the browser test measures MQTT-to-chart latency with it.
import { h } from './ui.js';

const MAX_POINTS = 3600;
const COLOURS = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#0969da', '#bf3989'];

export class LiveChart {
  // series: [{label}] (one per line); windowSeconds: how much time stays visible.
  constructor({ title, unit, series = [{ label: 'value' }], windowSeconds = 3600, height = 220 }) {
    this.unit = unit || '';
    this.windowSeconds = windowSeconds;
    this.series = series;
    this.data = [[], ...series.map(() => [])];
    this.pending = [];
    this.frame = 0;
    this.plot = null;
    this.height = height;
    this.summary = h('p', { class: 'chart-summary', 'aria-live': 'off' }, 'No data yet.');
    this.canvas = h('div', { class: 'chart-canvas', role: 'img', 'aria-label': `${title} chart` });
    this.element = h('figure', { class: 'chart' }, h('figcaption', {}, title), this.canvas, this.summary);
    this.resizer = new ResizeObserver(() => this.resize());
  }

  // After the element is in the document (uPlot needs its width).
  mount() {
    if (this.destroyed) return this;
    const { uPlot } = window;
    const width = Math.max(240, this.canvas.clientWidth || 600);
    const unit = this.unit;
    this.plot = new uPlot(
      {
        width,
        height: this.height,
        legend: { show: this.series.length > 1 },
        cursor: { drag: { x: false, y: false } },
        // At least a minute across: one point alone is not spread over years.
        scales: { x: { time: true, range: (u, min, max) => (max - min < 60 ? [max - 60, max + 2] : [min, max]) } },
        axes: [
          {},
          { values: (u, ticks) => ticks.map((v) => `${+v.toFixed(2)}${unit ? ` ${unit}` : ''}`), size: 70 },
        ],
        series: [
          {},
          ...this.series.map((s, index) => ({
            label: s.label,
            stroke: COLOURS[index % COLOURS.length],
            width: 2,
            spanGaps: true,
            points: { size: 4 },
          })),
        ],
      },
      this.data,
      this.canvas,
    );
    this.resizer.observe(this.canvas);
    return this;
  }

  resize() {
    if (!this.plot) return;
    const width = Math.max(240, this.canvas.clientWidth);
    if (width !== this.plot.width) this.plot.setSize({ width, height: this.height });
  }

  // points: [[epochSeconds, value], ...] for series index (oldest first).
  setHistory(index, points) {
    for (const [time, value] of points) this.insert(index, time, value);
    this.draw(null);
  }

  push(index, time, value, announce) {
    this.insert(index, time, value);
    this.pending.push(announce || null);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  insert(index, time, value) {
    const xs = this.data[0];
    let at = xs.length;
    while (at > 0 && xs[at - 1] > time) at -= 1;
    if (at > 0 && xs[at - 1] === time) {
      this.data[index + 1][at - 1] = value;
      return;
    }
    xs.splice(at, 0, time);
    this.data.forEach((column, c) => {
      if (c > 0) column.splice(at, 0, c === index + 1 ? value : null);
    });
    const cutoff = time - this.windowSeconds;
    let drop = 0;
    while (drop < xs.length && (xs[drop] < cutoff || xs.length - drop > MAX_POINTS)) drop += 1;
    if (drop) this.data.forEach((column) => column.splice(0, drop));
    // The newest point, whatever arrived last (history can land after a live point).
    if (!this.last || time >= this.last.time) this.last = { time, value, index };
  }

  flush() {
    this.frame = 0;
    const announced = this.pending;
    this.pending = [];
    this.draw(announced);
  }

  draw(announced) {
    if (this.plot) this.plot.setData(this.data);
    const count = this.data[0].length;
    if (this.last) {
      const series = this.series[this.last.index].label;
      const prefix = this.series.length > 1 ? `${series}: ` : '';
      this.summary.textContent =
        `${count} points. Latest ${prefix}${+this.last.value.toFixed(3)}${this.unit ? ` ${this.unit}` : ''}` +
        ` at ${new Date(this.last.time * 1000).toLocaleTimeString()}.`;
      this.element.dataset.last = String(this.last.value);
    }
    this.element.dataset.points = String(count);
    if (!announced) return;
    const drawnAt = Date.now();
    for (const detail of announced) {
      if (detail) document.dispatchEvent(new CustomEvent('console:drawn', { detail: { ...detail, drawnAt } }));
    }
  }

  destroy() {
    this.destroyed = true;
    cancelAnimationFrame(this.frame);
    this.resizer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

// A gauge: an SVG arc from min to max, the value in words beside it.
export class Gauge {
  constructor({ title, min, max, unit }) {
    this.min = min;
    this.max = max;
    this.unit = unit || '';
    const ns = 'http://www.w3.org/2000/svg';
    this.svg = document.createElementNS(ns, 'svg');
    this.svg.setAttribute('viewBox', '0 0 120 70');
    this.svg.setAttribute('aria-hidden', 'true');
    const track = document.createElementNS(ns, 'path');
    track.setAttribute('d', 'M10 60 A50 50 0 0 1 110 60');
    track.setAttribute('class', 'gauge-track');
    this.arc = document.createElementNS(ns, 'path');
    this.arc.setAttribute('class', 'gauge-value');
    this.svg.append(track, this.arc);
    this.text = h('p', { class: 'gauge-text' }, '–');
    this.element = h(
      'figure',
      { class: 'gauge', role: 'meter', 'aria-valuemin': String(min), 'aria-valuemax': String(max), 'aria-label': title },
      this.svg,
      this.text,
      h('p', { class: 'gauge-range' }, `${min} – ${max}`),
    );
  }

  set(value, unit) {
    if (unit) this.unit = unit;
    const fraction = Math.min(1, Math.max(0, (value - this.min) / (this.max - this.min)));
    const angle = Math.PI * (1 - fraction);
    const x = 60 + 50 * Math.cos(angle);
    const y = 60 - 50 * Math.sin(angle);
    this.arc.setAttribute('d', fraction > 0 ? `M10 60 A50 50 0 0 1 ${x.toFixed(2)} ${y.toFixed(2)}` : '');
    this.text.textContent = `${+value.toFixed(2)}${this.unit ? ` ${this.unit}` : ''}`;
    this.element.setAttribute('aria-valuenow', String(value));
    this.element.dataset.last = String(value);
  }
}
