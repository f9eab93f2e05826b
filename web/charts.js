// Line charts on uPlot (loaded from the npm package by index.html as the global `uPlot`): small,
// and fast on curves of 10^5 points. Each chart follows its container's width.

/** Colours that keep 3:1 against white (WCAG non-text contrast) and stay apart for colour-blind eyes. */
export const PALETTE = ['#1f5bd1', '#b3261e', '#1e7a3c', '#8a4b00', '#6d28d9'];

/** Tick spacings for the step axis: whole steps only (a 3-step job is not ticked at 1.2, 1.4, ...). */
const STEP_INCRS = Array.from({ length: 10 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

const fmt = (v) => (Number.isInteger(v) ? v.toLocaleString('en-US') : Number(v.toPrecision(3)).toString());

/**
 * What a chart shows, in words, for its `aria-label` (a canvas says nothing to a screen reader):
 * its title, the steps its axis spans as drawn, and each series' last value.
 */
export function describeChart(title, data, labels, xMin, xMax) {
  const n = data[0].length;
  const span = xMin == null ? '' : ` steps ${fmt(xMin)} to ${fmt(xMax)},`;
  if (n === 0) return `${title}:${span} no points yet`;
  const last = labels
    .map((label, i) => {
      const ys = data[i + 1];
      for (let j = n - 1; j >= 0; j--) if (ys[j] != null) return `${label} ${fmt(ys[j])} at step ${fmt(data[0][j])}`;
      return null;
    })
    .filter(Boolean);
  return `${title}:${span} ${n} points; last ${last.join(', ')}`;
}

export function lineChart(el, { series, yLabel, points = false, height = 220 }) {
  const title = el.getAttribute('aria-label') ?? yLabel;
  const labels = series.map((s) => s.label);
  const opts = {
    width: Math.max(240, el.clientWidth || 320),
    height,
    scales: { x: { time: false } },
    legend: { live: false },
    cursor: { drag: { x: true, y: false } },
    series: [
      { label: 'step' },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: s.stroke ?? PALETTE[i % PALETTE.length],
        width: 2,
        spanGaps: true,
        // Later series draw smaller points, so equal values (float = int8) leave both visible.
        points: { show: points, size: 10 - 4 * Math.min(i, 1) },
      })),
    ],
    axes: [
      { label: 'step', incrs: STEP_INCRS },
      { label: yLabel, size: 60 },
    ],
    hooks: {
      // After every change of the drawn steps (new data, a given range, a drag zoom).
      setScale: [(u, key) => key === 'x' && el.setAttribute('aria-label', describeChart(title, u.data, labels, u.scales.x.min, u.scales.x.max))],
    },
  };
  const empty = [[], ...series.map(() => [])];
  const plot = new uPlot(opts, empty, el);
  const resize = () => plot.setSize({ width: Math.max(240, el.clientWidth || 320), height });
  const observer = new ResizeObserver(resize);
  observer.observe(el);
  return {
    plot,
    /**
     * `steps`: the [first, last] step the axis spans, so that charts of one job line up and an
     * empty chart does not keep the axis of the job shown before; else the data's own steps.
     */
    setData(data, steps) {
      plot.batch(() => {
        plot.setData(data);
        if (steps) plot.setScale('x', { min: steps[0], max: Math.max(steps[1], steps[0] + 1) });
      });
      if (data[0].length === 0 && !steps) el.setAttribute('aria-label', describeChart(title, data, labels));
    },
    destroy() {
      observer.disconnect();
      plot.destroy();
    },
  };
}

/** Columns for uPlot from points sorted by step: [steps, ...one array per key]. */
export function columns(points, keys) {
  return [points.map((p) => p.step), ...keys.map((k) => points.map((p) => p[k] ?? null))];
}

/** Several runs on one x axis (steps of all runs), nulls where a run has no point. */
export function joinRuns(runs, key) {
  const steps = [...new Set(runs.flatMap((r) => r.points.filter((p) => p[key] != null).map((p) => p.step)))].sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const ys = runs.map((r) => {
    const y = new Array(steps.length).fill(null);
    for (const p of r.points) if (p[key] != null) y[index.get(p.step)] = p[key];
    return y;
  });
  return [steps, ...ys];
}

const CSV_COLUMNS = ['step', 'epoch', 'loss', 'learningRate', 'imagesPerSecond', 'top1', 'top5', 'floatTop1', 'revision'];

/** The metric points as CSV (RFC 4180; numbers only, so nothing needs quoting). */
export function toCsv(points) {
  const rows = points.map((p) => CSV_COLUMNS.map((c) => (p[c] == null ? '' : String(p[c]))).join(','));
  return [CSV_COLUMNS.join(','), ...rows].join('\r\n') + '\r\n';
}
