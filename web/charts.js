// Line charts on uPlot (loaded from the npm package by index.html as the global `uPlot`): small,
// and fast on curves of 10^5 points. Each chart follows its container's width.

/** Colours that keep 3:1 against white (WCAG non-text contrast) and stay apart for colour-blind eyes. */
export const PALETTE = ['#1f5bd1', '#b3261e', '#1e7a3c', '#8a4b00', '#6d28d9'];

export function lineChart(el, { series, yLabel, points = false, height = 220 }) {
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
    axes: [{ label: 'step' }, { label: yLabel, size: 60 }],
  };
  const empty = [[], ...series.map(() => [])];
  const plot = new uPlot(opts, empty, el);
  const resize = () => plot.setSize({ width: Math.max(240, el.clientWidth || 320), height });
  const observer = new ResizeObserver(resize);
  observer.observe(el);
  return {
    plot,
    setData(data) {
      plot.setData(data);
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
