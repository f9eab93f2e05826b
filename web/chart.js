// A dependency-free line chart for the loss curve: training loss on the left axis, validation
// top-1 (0..1) on the right axis. Redrawn whole on each poll; a job has at most a few thousand
// points, far below what a canvas redraw notices.

const PAD = { left: 48, right: 44, top: 12, bottom: 28 };

/** "Nice" tick values covering [lo, hi] (1, 2, 5 x 10^k steps); the last tick is >= hi. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  const first = Math.floor(lo / step);
  const last = Math.ceil(hi / step - 1e-9);
  for (let i = first; i <= last; i++) ticks.push(+(i * step).toFixed(10));
  return ticks;
}

export function drawChart(canvas, points) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px system-ui, sans-serif';
  const losses = points.filter((p) => p.loss != null);
  const accs = points.filter((p) => p.top1 != null);
  if (losses.length === 0) {
    ctx.fillStyle = '#6b7385';
    ctx.fillText('no training steps yet', w / 2 - 50, h / 2);
    return;
  }
  const maxStep = Math.max(...points.map((p) => p.step), 1);
  const xTicks = niceTicks(0, maxStep, 6);
  const yTicks = niceTicks(0, Math.max(...losses.map((p) => p.loss)), 5);
  const xMax = xTicks[xTicks.length - 1];
  const yMax = yTicks[yTicks.length - 1];
  const x = (step) => PAD.left + (step / xMax) * (w - PAD.left - PAD.right);
  const yLoss = (v) => h - PAD.bottom - (v / yMax) * (h - PAD.top - PAD.bottom);
  const yAcc = (v) => h - PAD.bottom - v * (h - PAD.top - PAD.bottom);

  ctx.strokeStyle = '#dde1e8';
  ctx.fillStyle = '#6b7385';
  ctx.lineWidth = 1;
  for (const t of yTicks) {
    ctx.beginPath(); ctx.moveTo(PAD.left, yLoss(t)); ctx.lineTo(w - PAD.right, yLoss(t)); ctx.stroke();
    ctx.fillText(String(t), 4, yLoss(t) + 4);
  }
  for (const t of xTicks) ctx.fillText(String(t), x(t) - 8, h - 10);
  for (const t of [0, 0.5, 1]) ctx.fillText(`${t * 100}%`, w - PAD.right + 6, yAcc(t) + 4);

  line(ctx, losses.map((p) => [x(p.step), yLoss(p.loss)]), '#2e6be6');
  if (accs.length > 0) {
    const pts = accs.map((p) => [x(p.step), yAcc(p.top1)]);
    line(ctx, pts, '#2f8a4c');
    ctx.fillStyle = '#2f8a4c';
    for (const [px, py] of pts) { ctx.beginPath(); ctx.arc(px, py, 3, 0, 2 * Math.PI); ctx.fill(); }
  }
}

function line(ctx, pts, color) {
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  pts.forEach(([px, py], i) => (i === 0 ? ctx.moveTo(px, py) : ctx.lineTo(px, py)));
  ctx.stroke();
}
