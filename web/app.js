// The dashboard. It uses the public REST API only, so what it shows is what any client sees:
//   - the open job follows GET /v1/jobs/:id/events (SSE read with fetch, so the key can be sent):
//     status, progress, metric points and validation scores as they are written;
//   - compared runs page their metrics with the revision cursor (?cursor=), which returns every
//     point and every later score once;
//   - the job table, the models and /readyz are polled (they change rarely and cost one request).
import { packBatches } from './batches.js';
import { columns, joinRuns, lineChart, PALETTE, toCsv } from './charts.js';
import { followEvents } from './sse.js';

const POLL_MS = 3000;
/**
 * A job with more steps than this is drawn from GET /v1/jobs/:id/curve (about CURVE_POINTS points)
 * and followed from its newest event, not replayed event by event: a 1.875M-step job's 2.1M events
 * took 26.6 s to draw and kept the page busy for 20 s of it.
 */
const LONG_HISTORY_STEPS = 20000;
const CURVE_POINTS = 2000;
const MAX_COMPARE = 5;
const TERMINAL = ['succeeded', 'failed', 'cancelled'];
const EXAMPLE_CONFIG = {
  name: 'synthetic-demo',
  dataset: { type: 'synthetic', classes: 4, samplesPerClass: 32 },
  model: { widthMultiplier: 0.35, inputSize: 32 },
  training: { epochs: 1, batchSize: 16 },
};
// Keys of each dataset type: switching the type drops the others' keys from the JSON.
const DATASET_KEYS = {
  synthetic: ['classes', 'samplesPerClass', 'valPerClass', 'seed'],
  'fashion-mnist': ['limit', 'testLimit'],
  imagefolder: ['path', 'valSplit'],
};

const $ = (sel) => document.querySelector(sel);
const state = {
  selected: null,
  job: null,
  /** step -> point of the open job, from its event stream (after its sampled curve when `sampled`). */
  points: new Map(),
  sampled: false,
  stream: null,
  charts: null,
  /** id -> {name, points: Map, cursor} of the runs ticked for comparison. */
  compare: new Map(),
  compareChart: null,
  compareShape: '',
  listed: 20,
  /** Models shown: the newest this many (GET /v1/models pages them). */
  modelsListed: 20,
  /**
   * This key may not list models (no predict scope). A key's scopes never change: the list is not
   * asked for at every poll (20 refusals a minute, each a log line) until another key is saved.
   */
  modelsRefused: false,
  canAdmin: false,
  jobNames: new Map(),
  /** Jobs found gone when a job that started from one was shown. */
  deletedJobs: new Set(),
};

// ---- API access ---------------------------------------------------------------------------------

// The API key, when the server asks for one: kept for this tab only (sessionStorage), sent as a
// Bearer token. A 401 shows the key form; saving a key reloads everything at once.
const KEY_ITEM = 'qatserve.apiKey';

function authHeaders() {
  const key = sessionStorage.getItem(KEY_ITEM);
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** Most waits the page sits out for itself: the rate limit's and an overload's (1 s), not a job quota's 30. */
const MAX_RETRY_AFTER_S = 5;

/**
 * How far the server's clock is ahead of this browser's, from the `Date` header of the last API
 * answer. A job's times are the server's: on a laptop whose clock is hours off (a dual-boot
 * machine keeping local time in its hardware clock, a board without a clock battery) a running
 * job showed "under a minute" of training left for all of it, or hours too many, and "finished
 * jobs older than N days" counted the days from the wrong now.
 */
let serverClockAheadMs = 0;
const serverNow = () => Date.now() + serverClockAheadMs;

function noteServerClock(res) {
  const date = Date.parse(res.headers.get('date') ?? '');
  // The header has whole seconds: the middle of its second is the best guess.
  if (Number.isFinite(date)) serverClockAheadMs = date + 500 - Date.now();
}

async function request(path, init = {}) {
  const headers = new Headers(init.headers);
  for (const [k, v] of Object.entries(authHeaders())) headers.set(k, v);
  // The page's own bursts (a reload, opening a job, a deletion's refreshes) can meet the per-second
  // rate limit, and a busy server sheds load or has no room in its predictor queue (503 with
  // Retry-After: a folder of photos classified while others predict). A refused request did
  // nothing, so it is sent again after the wait, up to twice.
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(path, { ...init, headers });
    noteServerClock(res);
    const wait = Number(res.headers.get('retry-after'));
    if ((res.status !== 429 && res.status !== 503) || attempt === 2 || !(wait > 0 && wait <= MAX_RETRY_AFTER_S)) return res;
    await new Promise((r) => setTimeout(r, wait * 1000));
  }
}

async function api(path, init = {}) {
  const res = await request(path, init);
  const body = res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text();
  if (res.status === 401) askForKey(body?.error?.message ?? 'This server needs an API key.');
  if (!res.ok) throw Object.assign(new Error(errorText(body, res.status)), { status: res.status, body });
  return body;
}

function askForKey(why) {
  $('#api-key-form').hidden = false;
  $('#api-key-error').textContent = sessionStorage.getItem(KEY_ITEM) ? `The key was refused: ${why}` : why;
}

function saveKey(event) {
  event.preventDefault();
  const key = $('#api-key').value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_ITEM, key);
  $('#api-key').value = '';
  $('#api-key-form').hidden = true;
  state.modelsRefused = false;
  probeAdmin();
  refreshAll();
  if (state.selected) openJob(state.selected, true);
}

/**
 * Whether this key may promote models (admin scope). The API has no "who am I" route; the admin
 * listing of keys answers 200 exactly when the caller holds admin (or auth is off).
 */
async function probeAdmin() {
  const res = await request('/v1/keys').catch(() => null);
  // Only a 401 or 403 says "not admin". A 429 (the page's first burst of requests can meet the rate
  // limit), a 503 or a network error says nothing: asking again beats hiding the promote buttons
  // until the next reload.
  if (!res || (!res.ok && res.status !== 401 && res.status !== 403)) {
    const retryAfter = Number(res?.headers.get('retry-after')) || 2;
    setTimeout(probeAdmin, retryAfter * 1000);
    return;
  }
  state.canAdmin = res.ok;
  refreshModels().catch(() => {});
  refreshWorkers().catch(() => {});
  refreshKeys().catch(() => {});
}

/** The API's error shape {error: {code, message, issues}} as a readable block. */
function errorText(body, status) {
  const e = body && body.error;
  if (!e) return `HTTP ${status}`;
  const issues = (e.issues || []).map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n');
  return `${e.code}: ${e.message}${issues ? `\n${issues}` : ''}`;
}

// ---- small helpers ------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c != null));
  return node;
}
/**
 * Puts `rows` into `tbody` in order, keeping each row and cell already shown that has not changed.
 * The tables are polled: rebuilding them would take the keyboard focus (and a text selection) away
 * from a user every few seconds. A cell that did change is swapped for its new one.
 */
function syncRows(tbody, rows, keyOf) {
  const shown = new Map([...tbody.rows].map((tr) => [keyOf(tr), tr]));
  const placed = rows.map((fresh) => {
    const tr = shown.get(keyOf(fresh));
    if (!tr || tr.cells.length !== fresh.cells.length) return fresh;
    tr.className = fresh.className;
    [...fresh.cells].forEach((cell, i) => {
      if (!tr.cells[i].isEqualNode(cell)) tr.cells[i].replaceWith(cell);
    });
    return tr;
  });
  // Only rows out of place move: a new job on top does not detach the rows below it.
  placed.forEach((tr, i) => {
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] ?? null);
  });
  while (tbody.rows.length > placed.length) tbody.lastElementChild.remove();
}
const pct = (x) => (x == null ? '—' : `${(x * 100).toFixed(1)}%`);
const kib = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;

/**
 * A model's top-1, and what it was measured on: the final evaluation (the int8 file on the whole
 * validation split) where the model has one; models exported before rows kept it show the
 * export's check on its verification images.
 */
function modelTop1(m) {
  if (m.validationTop1 != null) {
    return { value: pct(m.validationTop1), basis: `top-5 ${pct(m.validationTop5)}; ${m.validationImages.toLocaleString()} validation images` };
  }
  return { value: pct(m.int8Top1), basis: `${m.verificationImages?.toLocaleString() ?? 'the'} verification images` };
}

/**
 * What quantization cost: int8 against float top-1 in points, both measured on the export's
 * verification images (the same images, so sampling does not enter the difference).
 */
function quantizationCost(m) {
  if (m.int8Top1 == null || m.floatTop1 == null) return null;
  const points = (m.int8Top1 - m.floatTop1) * 100;
  const images = m.verificationImages == null ? '' : ` on ${m.verificationImages.toLocaleString()} images`;
  return { value: `${points < 0 ? '−' : '+'}${Math.abs(points).toFixed(1)} pt`, basis: `float ${pct(m.floatTop1)}, int8 ${pct(m.int8Top1)}${images}` };
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function progressText(job) {
  const p = job.progress;
  // Before the first step a large image folder is read (p.phase): minutes for a million photos.
  if (!p.totalSteps) return job.status === 'queued' ? 'waiting for a worker' : p.phase ? phaseText(p.phase) : '';
  const done = Math.round((100 * p.step) / p.totalSteps);
  const speed = p.imagesPerSecond ? ` · ${p.imagesPerSecond.toFixed(1)} img/s` : '';
  const phase = p.phase ? ` · ${phaseText(p.phase)}` : '';
  const left = trainingLeft(job);
  return `step ${p.step}/${p.totalSteps} (${done}%) · epoch ${p.epoch}${speed}${left ? ` · ${left} of training left` : ''}${phase}`;
}

/** "about 12 min", from the server's estimate of when a training job's last step is done; '' without one. */
function trainingLeft(job) {
  const p = job.progress;
  if (job.status !== 'running' || !p.trainingEndsAt || p.step >= p.totalSteps) return '';
  const min = Math.round((Date.parse(p.trainingEndsAt) - serverNow()) / 60_000);
  if (min < 1) return 'under a minute';
  return min < 60 ? `about ${min} min` : `about ${Math.floor(min / 60)} h ${min % 60} min`;
}

/** "4 min 12 s", "1 h 3 min": how long a finished job took. */
function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** "evaluating: int8 top-1 on the validation split, 1,250 of 2,000 images" (or "preparing: reading the image folder, ...") */
function phaseText(phase) {
  const count = phase.total ? `, ${phase.done.toLocaleString('en')} of ${phase.total.toLocaleString('en')} images` : '';
  return `${phase.name}: ${phase.task}${count}`;
}

/** The table's column: steps, share and the phase's name only (the open job shows the rest). */
function shortProgress(job) {
  const p = job.progress;
  if (!p.totalSteps) return job.status === 'queued' ? 'waiting' : (p.phase?.name ?? '');
  const phase = p.phase ? ` · ${p.phase.name}` : '';
  const left = trainingLeft(job);
  return `${p.step}/${p.totalSteps} (${Math.round((100 * p.step) / p.totalSteps)}%)${left ? ` · ${left} left` : ''}${phase}`;
}

function statusPill(status) {
  return el('span', { className: `pill ${status}` }, status);
}

// ---- job table and comparison -------------------------------------------------------------------

async function refreshJobs() {
  const { jobs, nextCursor } = await api(`/v1/jobs?limit=${state.listed}`);
  const rows = jobs.map((job) => {
    state.jobNames.set(job.id, job.name);
    const box = el('input', { type: 'checkbox', checked: state.compare.has(job.id) });
    box.setAttribute('aria-label', `compare ${job.name}`);
    box.addEventListener('change', () => toggleCompare(job, box));
    const open = jobLink(job.id);
    const tr = el(
      'tr',
      { className: job.id === state.selected ? 'selected' : '' },
      el('td', {}, box),
      el('td', {}, open),
      el('td', {}, statusPill(job.status)),
      el('td', {}, shortProgress(job)),
      el('td', {}, timeCell(job.createdAt)),
    );
    tr.dataset.jobId = job.id;
    return tr;
  });
  syncRows($('#jobs tbody'), rows, (tr) => tr.dataset.jobId);
  $('#more-jobs').hidden = !nextCursor || state.listed >= 100;
}

/**
 * When, for a narrow column: the time alone today, else the date and time, no seconds (the full
 * date, "12/7/2026, 10:16:10 PM", made the jobs table scroll sideways inside its panel at 1,280 px
 * and hid the column at 1,024); the full one on hover.
 */
function timeCell(iso) {
  const at = new Date(iso);
  const today = at.toDateString() === new Date(serverNow()).toDateString();
  const short = { hour: 'numeric', minute: '2-digit', ...(today ? {} : { month: 'short', day: 'numeric' }) };
  return el('time', { dateTime: iso, title: at.toLocaleString() }, at.toLocaleString([], short));
}

function toggleCompare(job, box) {
  const note = $('#compare-note');
  note.textContent = '';
  if (box.checked) {
    if (state.compare.size >= MAX_COMPARE) {
      box.checked = false;
      note.textContent = `Up to ${MAX_COMPARE} runs can be compared; untick one first.`;
      return;
    }
    state.compare.set(job.id, { name: job.name, points: new Map(), cursor: 0 });
  } else {
    state.compare.delete(job.id);
  }
  refreshCompare().catch((err) => (note.textContent = err.message));
}

let comparing = null;
let compareAgain = false;

/**
 * One pull of the compared runs at a time: a run ticked while the poll's pull pages a long run
 * (100 pages for 100,000 points) started a second one, and the two paged from the same cursors
 * (147 requests instead of about 100, with more of them over the rate limit). A call during a
 * pull asks for one more pass after it, which finds what the call wanted.
 */
function refreshCompare() {
  if (comparing) {
    compareAgain = true;
    return comparing;
  }
  comparing = (async () => {
    try {
      do {
        compareAgain = false;
        await pullCompare();
      } while (compareAgain);
    } finally {
      comparing = null;
    }
  })();
  return comparing;
}

/** Pulls each compared run's points written since its cursor (only new ones after the first call). */
async function pullCompare() {
  $('#compare-panel').hidden = state.compare.size === 0;
  for (const [id, run] of state.compare) {
    for (;;) {
      let page;
      try {
        page = await api(`/v1/jobs/${encodeURIComponent(id)}/metrics?cursor=${run.cursor}&limit=1000`);
      } catch (err) {
        if (err.status !== 404) throw err;
        state.compare.delete(id); // deleted meanwhile
        break;
      }
      for (const p of page.points) run.points.set(p.step, p);
      run.cursor = page.nextCursor;
      if (!page.more) break;
    }
  }
  $('#compare-panel').hidden = state.compare.size === 0;
  renderCompare();
}

function renderCompare() {
  if (state.compare.size === 0) return;
  const key = $('#compare-metric').value;
  const runs = [...state.compare.entries()].map(([id, r]) => ({ id, name: r.name, points: [...r.points.values()].sort((a, b) => a.step - b.step) }));
  const shape = `${key}|${runs.map((r) => r.id).join(',')}`;
  if (shape !== state.compareShape) {
    state.compareChart?.destroy();
    const target = $('#chart-compare');
    target.replaceChildren();
    state.compareChart = lineChart(target, {
      series: runs.map((r, i) => ({ label: r.name, stroke: PALETTE[i] })),
      yLabel: key === 'top1' ? 'top-1' : key === 'learningRate' ? 'learning rate' : 'loss',
      points: key === 'top1',
    });
    state.compareShape = shape;
  }
  state.compareChart.setData(joinRuns(runs, key));
}

// ---- the open job -------------------------------------------------------------------------------

function ensureCharts() {
  if (state.charts) return state.charts;
  state.charts = {
    loss: lineChart($('#chart-loss'), { series: [{ label: 'loss' }], yLabel: 'loss' }),
    lr: lineChart($('#chart-lr'), { series: [{ label: 'learning rate', stroke: PALETTE[3] }], yLabel: 'learning rate' }),
    acc: lineChart($('#chart-acc'), {
      series: [
        { label: 'float top-1', stroke: PALETTE[0] },
        { label: 'int8 top-1', stroke: PALETTE[1] },
      ],
      yLabel: 'top-1',
      points: true,
    }),
  };
  return state.charts;
}

async function openJob(id, force = false) {
  if (state.selected === id && !force) return;
  state.stream?.close();
  Object.assign(state, { selected: id, job: null, points: new Map(), stream: null, sampled: false });
  history.replaceState(null, '', `#job=${encodeURIComponent(id)}`);
  $('#job-panel').hidden = false;
  $('#evaluation').hidden = true;
  $('#job-warnings').hidden = true;
  $('#job-error').textContent = '';
  ensureCharts();
  renderCharts();
  try {
    state.job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
  } catch (err) {
    $('#job-error').textContent = err.message;
    return;
  }
  renderJob();
  if (state.job.warnings > 0) refreshWarnings(id);
  for (const tr of document.querySelectorAll('#jobs tbody tr')) tr.classList.toggle('selected', tr.dataset.jobId === id);
  // A short job's charts are built from its event stream alone, every event from the first; a
  // long one's from a sampled curve, then the events after it.
  let lastEventId = null;
  if ((state.job.progress?.step ?? 0) > LONG_HISTORY_STEPS) {
    try {
      const curve = await api(`/v1/jobs/${encodeURIComponent(id)}/curve?points=${CURVE_POINTS}`);
      if (state.selected !== id) return;
      for (const p of curve.points) state.points.set(p.step, p);
      state.sampled = curve.stride > 1;
      lastEventId = curve.lastEventId;
      scheduleRedraw();
    } catch (err) {
      $('#job-error').textContent = err.message;
      return;
    }
  }
  state.stream = followEvents(`/v1/jobs/${encodeURIComponent(id)}/events`, {
    lastEventId,
    headers: authHeaders,
    isDone: () => state.selected !== id || TERMINAL.includes(state.job?.status),
    onState: (s, detail) => setLive(s, detail),
    onEvent: (e) => {
      if (state.selected === id) applyEvent(e);
    },
  });
}

function setLive(s, detail) {
  const pill = $('#live');
  const text = { live: 'live', reconnecting: 'reconnecting…', ended: 'finished', error: `stream error ${detail ?? ''}` }[s] ?? s;
  pill.textContent = text;
  pill.className = `pill live-${s}`;
  if (s === 'error' && detail === 401) askForKey('This server needs an API key.');
}

let redraw = 0;
function scheduleRedraw() {
  redraw ||= requestAnimationFrame(() => {
    redraw = 0;
    renderCharts();
    renderFacts();
  });
}

function applyEvent(e) {
  const data = JSON.parse(e.data);
  const job = state.job;
  if (e.type === 'status') {
    job.status = data.status;
    job.error = data.error ?? null;
    // Only a running job is in a phase (as GET /v1/jobs/:id says).
    if (!['running', 'cancelling'].includes(data.status) && job.progress.phase) {
      job.progress.phase = null;
      renderProgress();
    }
    renderStatus();
    if (TERMINAL.includes(data.status)) {
      // The model row and finish time come with the job itself.
      api(`/v1/jobs/${encodeURIComponent(job.id)}`)
        .then((j) => {
          if (state.selected !== j.id) return;
          state.job = j;
          renderJob();
        })
        .catch(() => {});
      refreshModels().catch(() => {});
    }
    refreshJobs().catch(() => {});
  } else if (e.type === 'progress') {
    const p = job.progress;
    Object.assign(p, { step: data.step, epoch: data.epoch });
    if (data.totalSteps != null) p.totalSteps = data.totalSteps;
    if (data.imagesPerSecond != null) p.imagesPerSecond = data.imagesPerSecond;
    // Steps carry the estimate; a phase's events keep the last one; a restart has none yet.
    if (data.trainingEndsAt || data.restartedAtStep != null) p.trainingEndsAt = data.trainingEndsAt ?? null;
    if (data.backend) job.backend = data.backend;
    if (data.dataset) {
      job.dataset = data.dataset;
      renderFacts();
    }
    // Steps' events carry no phase: the job is back at its steps.
    p.phase = data.phase ?? null;
    // A resumed run rewrites the steps after its checkpoint.
    if (data.restartedAtStep != null) for (const s of [...state.points.keys()]) if (s > data.restartedAtStep) state.points.delete(s);
    renderProgress();
  } else if (e.type === 'metric' || e.type === 'evaluation') {
    state.points.set(data.step, data);
    scheduleRedraw();
  } else if (e.type === 'warning') {
    refreshWarnings(job.id);
  }
}

/**
 * The texts of the open job's warnings (its row only counts them), read again on each `warning`
 * event; a replayed stream's many events make one request at a time, and one more after it.
 */
const warningReads = { busy: false, again: null };
async function refreshWarnings(id) {
  if (warningReads.busy) return void (warningReads.again = id);
  warningReads.busy = true;
  try {
    const w = await api(`/v1/jobs/${encodeURIComponent(id)}/warnings`);
    if (state.selected !== id) return;
    state.job.warnings = w.total;
    renderFacts();
    $('#job-warning-list').replaceChildren(...w.warnings.map((x) => el('li', {}, el('code', {}, x.code), ` ${x.message}`)));
    $('#job-warning-more').textContent =
      w.total > w.warnings.length ? `and ${(w.total - w.warnings.length).toLocaleString()} more (the worker's log has them all)` : '';
    $('#job-warnings').hidden = w.warnings.length === 0;
  } catch {
    // The count stays in the facts; the texts come with the next warning or a reopened panel.
  } finally {
    warningReads.busy = false;
    const next = warningReads.again;
    warningReads.again = null;
    if (next && state.selected === next) refreshWarnings(next);
  }
}

const sortedPoints = () => [...state.points.values()].sort((a, b) => a.step - b.step);

function renderCharts() {
  const charts = state.charts;
  if (!charts) return;
  const points = sortedPoints();
  // One axis for the job's three charts: its steps so far (its whole run before the first).
  const steps = points.length > 0 ? [points[0].step, points.at(-1).step] : [0, state.job?.progress?.totalSteps || 1];
  charts.loss.setData(
    columns(
      points.filter((p) => p.loss != null),
      ['loss'],
    ),
    steps,
  );
  charts.lr.setData(
    columns(
      points.filter((p) => p.learningRate != null),
      ['learningRate'],
    ),
    steps,
  );
  charts.acc.setData(
    columns(
      points.filter((p) => p.top1 != null || p.floatTop1 != null),
      ['floatTop1', 'top1'],
    ),
    steps,
  );
}

function renderStatus() {
  const job = state.job;
  const status = $('#job-status');
  status.textContent = job.status;
  status.className = `pill ${job.status}`;
  refreshQueuePlace().catch(() => {});
  $('#cancel-job').hidden = !['queued', 'running'].includes(job.status);
  $('#resume-job').hidden = !['failed', 'cancelled'].includes(job.status);
  $('#delete-job').hidden = !TERMINAL.includes(job.status);
  // A job has a checkpoint to start from once it has trained (the server says if it has none yet).
  $('#finetune-job').hidden = !(job.progress.step > 0);
  $('#job-error').textContent = job.error ? `${job.error.code}: ${job.error.message}` : '';
}

function renderProgress() {
  const job = state.job;
  $('#job-progress').textContent = progressText(job);
  const bar = $('#job-bar');
  bar.max = job.progress.totalSteps || 1;
  bar.value = job.status === 'succeeded' ? bar.max : job.progress.step;
}

function renderFacts() {
  const job = state.job;
  if (!job) return;
  const data = job.dataset;
  const from = job.config.init?.fromJob;
  const more = data && data.classes > data.classNames.length ? `, and ${(data.classes - data.classNames.length).toLocaleString()} more` : '';
  const facts = [
    // Jobs that ran before the thirty-ninth session have none.
    ['data', data?.description ?? (job.status === 'queued' ? '— (read when training starts)' : '—')],
    ...(data ? [['classes', `${data.classNames.join(', ')}${more}`]] : []),
    ...(from ? [["started from job's weights", state.deletedJobs.has(from) ? `${from} (deleted since)` : jobLink(from)]] : []),
    ['backend', job.backend ?? '—'],
    ['attempts', String(job.attempts)],
    ['warnings', String(job.warnings)],
    ['started', job.startedAt ? new Date(job.startedAt).toLocaleString() : '—'],
    ['finished', job.finishedAt ? new Date(job.finishedAt).toLocaleString() : '—'],
    ...(job.startedAt && job.finishedAt ? [['took', duration(Date.parse(job.finishedAt) - Date.parse(job.startedAt))]] : []),
  ];
  const lastEval = sortedPoints()
    .reverse()
    .find((p) => p.top1 != null);
  if (lastEval) facts.push(['validation top-1 (int8)', pct(lastEval.top1)]);
  if (lastEval?.floatTop1 != null) facts.push(['validation top-1 (float)', pct(lastEval.floatTop1)]);
  if (job.model) {
    facts.push(['model', job.model.id]);
    const top1 = modelTop1(job.model);
    facts.push(['model top-1 (int8)', `${top1.value} (${top1.basis})`]);
    const cost = quantizationCost(job.model);
    if (cost) facts.push(['int8 vs float', `${cost.value} (${cost.basis})`]);
    facts.push(['model size', `${kib(job.model.sizeBytes)} (fp32 ${kib(job.model.float32SizeBytes)})`]);
  }
  $('#job-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

/** A button that opens the job `id`, named as the job list last named it. */
function jobLink(id) {
  const open = el('button', { type: 'button', className: 'link' }, state.jobNames.get(id) ?? id);
  open.addEventListener('click', () => openJob(id));
  return open;
}

/** Learns the name of a job the list has not shown (deleted: says so), then shows the facts again. */
async function learnJobName(id) {
  if (state.jobNames.has(id) || state.deletedJobs.has(id)) return;
  try {
    state.jobNames.set(id, (await api(`/v1/jobs/${encodeURIComponent(id)}`)).name);
  } catch (err) {
    if (err.status !== 404) return; // asked again at the next render
    state.deletedJobs.add(id);
  }
  renderFacts();
}

function renderJob() {
  const job = state.job;
  if (job.config.init?.fromJob) learnJobName(job.config.init.fromJob).catch(() => {});
  $('#job-title').textContent = `${job.name} (${job.id})`;
  $('#job-config').textContent = JSON.stringify(job.config, null, 2);
  renderStatus();
  renderProgress();
  renderFacts();
  if (job.status === 'succeeded' && job.model)
    showEvaluation(job.model).catch((err) => {
      $('#evaluation').hidden = false;
      $('#evaluation-summary').textContent = err.status === 403 ? 'The evaluation needs a key with the predict scope.' : err.message;
    });
}

async function showEvaluation(model) {
  const res = await api(`/v1/models/${encodeURIComponent(model.id)}/evaluation`);
  if (state.job?.model?.id !== model.id) return;
  const box = $('#evaluation');
  box.hidden = false;
  const e = res.evaluation;
  if (!e) {
    $('#evaluation-summary').textContent = 'This model was exported without a final evaluation.';
    $('#per-class tbody').replaceChildren();
    $('#confusion-box').hidden = true;
    $('#mistakes-box').hidden = true;
    return;
  }
  $('#evaluation-summary').textContent = `${e.images} validation images: top-1 ${pct(e.top1)}, top-5 ${pct(e.top5)}.`;
  $('#per-class tbody').replaceChildren(
    ...res.classes.map((c, i) => {
      const v = e.perClassTop1[i];
      return el('tr', {}, el('th', { scope: 'row' }, c), el('td', {}, el('span', { className: 'bar', style: `width:${(v ?? 0) * 6}em` }), ` ${pct(v)}`));
    }),
  );
  // Above 100 classes the evaluation has no matrix (classes² cells), only the most frequent mistakes.
  $('#confusion-box').hidden = !e.confusion;
  $('#mistakes-box').hidden = !!e.confusion;
  if (!e.confusion) {
    $('#mistakes tbody').replaceChildren(
      ...e.topConfusions.map((m) =>
        el('tr', {}, el('td', {}, res.classes[m.actual]), el('td', {}, res.classes[m.predicted]), el('td', { className: 'num' }, String(m.count))),
      ),
    );
    return;
  }
  const max = Math.max(1, ...e.confusion.flat());
  $('#confusion thead').replaceChildren(el('tr', {}, el('td'), ...res.classes.map((c) => el('th', { scope: 'col' }, c))));
  $('#confusion tbody').replaceChildren(
    ...e.confusion.map((row, i) =>
      el(
        'tr',
        {},
        el('th', { scope: 'row' }, res.classes[i]),
        ...row.map((n, j) => {
          // Shade by count; text switches to white where the shade gets dark, keeping 4.5:1 contrast.
          const t = n / max;
          const td = el('td', { className: `cell${t > 0.5 ? ' dark' : ''}${i === j ? ' diag' : ''}` }, String(n));
          td.style.background = `rgba(31, 91, 209, ${0.08 + 0.92 * t})`;
          return td;
        }),
      ),
    ),
  );
}

async function cancelSelected() {
  const id = state.selected;
  try {
    const job = await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    // The answer says `cancelling`; the stream may already have brought the job's end (a worker
    // stops within a second). A finished job's stream sends nothing more, so the older answer
    // must not replace what it said.
    if (state.selected !== id || TERMINAL.includes(state.job?.status)) return;
    state.job = job;
    renderJob();
  } catch (err) {
    $('#job-error').textContent = err.message;
  }
}

/** A failed or cancelled job queued again; its stream ended with it, so the panel follows it afresh. */
async function resumeSelected() {
  const id = state.selected;
  try {
    await api(`/v1/jobs/${encodeURIComponent(id)}/resume`, { method: 'POST' });
  } catch (err) {
    // 429: its key has as many jobs queued or running as it may; 409: it is not failed or cancelled.
    if (state.selected === id) $('#job-error').textContent = err.message;
    return;
  }
  refreshJobs().catch(() => {});
  if (state.selected === id) await openJob(id, true);
}

async function deleteSelected() {
  const id = state.selected;
  if (!confirm(`Delete job "${state.job?.name ?? id}" with its metrics, checkpoints and model? This cannot be undone.`)) return;
  try {
    await api(`/v1/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });
  } catch (err) {
    // 409: its model serves (promote another first), or a running job starts from it.
    if (state.selected === id) $('#job-error').textContent = err.message;
    return;
  }
  forgetJobs([id]);
}

/** Jobs that no longer exist leave the page: their panel, comparison lines, rows and models. */
function forgetJobs(ids) {
  if (ids.includes(state.selected)) {
    state.stream?.close();
    Object.assign(state, { selected: null, job: null, points: new Map(), stream: null, sampled: false });
    $('#job-panel').hidden = true;
    history.replaceState(null, '', location.pathname + location.search);
  }
  if (ids.map((id) => state.compare.delete(id)).some(Boolean)) refreshCompare().catch(() => {});
  refreshJobs().catch(() => {});
  refreshModels().catch(() => {});
}

/**
 * DELETE /v1/jobs?before=… page by page (100 jobs a request) until no page is left. Only finished
 * jobs go; the server keeps those still needed and says why, which is listed here.
 */
async function deleteFinished(event) {
  event.preventDefault();
  const note = $('#cleanup-note');
  const days = $('#cleanup-days').valueAsNumber;
  if (!(days >= 0)) {
    note.textContent = 'Days: a number of 0 or more.';
    return;
  }
  const before = new Date(serverNow() - days * 86_400_000);
  const status = $('#cleanup-status').value;
  const which = status ? `${status} job` : 'finished job';
  const whose = state.canAdmin ? 'of every key' : 'of this key';
  if (!confirm(`Delete every ${which} ${whose} created before ${before.toLocaleString()}, with its metrics, checkpoints and model? This cannot be undone.`))
    return;
  const button = $('#cleanup-delete');
  button.disabled = true;
  const deleted = [];
  const kept = [];
  let failure = null;
  try {
    let cursor = null;
    do {
      const q = new URLSearchParams({ before: before.toISOString(), limit: '100' });
      if (status) q.set('status', status);
      if (cursor) q.set('cursor', cursor);
      const page = await api(`/v1/jobs?${q}`, { method: 'DELETE' });
      deleted.push(...page.deleted);
      kept.push(...page.kept);
      note.textContent = `Deleted ${deleted.length} job${deleted.length === 1 ? '' : 's'} so far…`;
      cursor = page.nextCursor;
    } while (cursor);
  } catch (err) {
    failure = err;
  } finally {
    button.disabled = false;
  }
  const lines = [`Deleted ${deleted.length} job${deleted.length === 1 ? '' : 's'}.`];
  // The table lists the newest jobs only: a kept older one is named by its own record.
  const nameOf = (id) =>
    state.jobNames.get(id) ??
    api(`/v1/jobs/${encodeURIComponent(id)}`).then(
      (j) => j.name,
      () => id,
    );
  for (const k of kept) lines.push(`Kept "${await nameOf(k.id)}": ${k.message}`);
  if (failure) lines.push(`Stopped: ${failure.message}`);
  note.textContent = lines.join('\n');
  if (deleted.length) forgetJobs(deleted);
}

async function exportCsv() {
  const job = state.job;
  if (!job) return;
  const button = $('#export-csv');
  let points = sortedPoints();
  if (state.sampled) {
    // The charts hold a sample of a long job: the file gets every point, paged by step.
    button.disabled = true;
    try {
      points = [];
      for (let after = 0; after !== null;) {
        const page = await api(`/v1/jobs/${encodeURIComponent(job.id)}/metrics?after=${after}&limit=1000`);
        points.push(...page.points);
        after = page.nextAfter;
        button.textContent = `Downloading metrics… ${points.length.toLocaleString()} points`;
      }
    } catch (err) {
      $('#job-error').textContent = err.message;
      return;
    } finally {
      button.disabled = false;
      button.textContent = 'Download metrics (CSV)';
    }
  }
  saveBlob(new Blob([toCsv(points)], { type: 'text/csv' }), `metrics-${job.name}-${job.id}.csv`);
}

// ---- models -------------------------------------------------------------------------------------

/** A figure over the small print of what it was measured on. */
function cellWithBasis(figure) {
  return figure ? el('td', {}, figure.value, el('br'), el('small', {}, figure.basis)) : el('td', {}, '—');
}

async function refreshModels() {
  if (state.modelsRefused) return;
  let list;
  try {
    list = await api(`/v1/models?limit=${state.modelsListed}`);
    $('#models-error').textContent = '';
  } catch (err) {
    state.modelsRefused = err.body?.error?.code === 'SCOPE_MISSING';
    $('#models-error').textContent = state.modelsRefused ? 'Listing models needs a key with the predict scope.' : err.message;
    return;
  }
  syncRows(
    $('#models tbody'),
    list.items.map((m) => {
      const download = el('button', { type: 'button', className: 'secondary' }, 'Download');
      download.setAttribute('aria-label', `download model ${m.id}`);
      download.addEventListener('click', () => downloadModel(m));
      const actions = el('td', { className: 'actions' }, download);
      // Promoting pins a model as the serving one (also one serving now only as the newest).
      if (state.canAdmin && !m.promotedAt) {
        const promote = el('button', { type: 'button', className: 'secondary promote' }, 'Promote');
        promote.setAttribute('aria-label', `promote model ${m.id} to serve`);
        promote.addEventListener('click', () => promoteModel(m, promote));
        actions.append(promote);
      }
      const ratio = m.float32SizeBytes ? (m.float32SizeBytes / m.sizeBytes).toFixed(1) : null;
      const tr = el(
        'tr',
        {},
        el(
          'td',
          {},
          el('span', { className: 'mono' }, m.id.slice(0, 8)),
          el('br'),
          el('small', {}, state.jobNames.get(m.jobId) ?? `job ${m.jobId.slice(0, 8)}`),
        ),
        cellWithBasis(modelTop1(m)),
        cellWithBasis(quantizationCost(m)),
        el('td', {}, kib(m.sizeBytes), el('br'), el('small', {}, ratio ? `${ratio}× smaller than fp32 (${kib(m.float32SizeBytes)})` : '')),
        el(
          'td',
          {},
          m.serving ? el('span', { className: 'pill serving' }, m.promotedAt ? 'serving · promoted' : 'serving') : m.promotedAt ? 'promoted earlier' : '',
        ),
        actions,
      );
      tr.dataset.modelId = m.id;
      return tr;
    }),
    (tr) => tr.dataset.modelId,
  );
  $('#more-models').hidden = !list.nextCursor || state.modelsListed >= 100;
  // A model promoted long ago can be older than every model listed: say which one serves.
  const servingShown = list.items.some((m) => m.id === list.servingId);
  $('#models-note').textContent = list.servingId && !servingShown ? `Serving model ${list.servingId.slice(0, 8)}, older than the models listed.` : '';
}

async function downloadModel(m) {
  // A link cannot carry the key: fetch the file, then save it.
  try {
    const res = await request(`/v1/models/${encodeURIComponent(m.id)}/download`);
    if (!res.ok) throw new Error(errorText(await res.json().catch(() => null), res.status));
    saveBlob(await res.blob(), `model-${m.id}.onnx`);
  } catch (err) {
    $('#models-error').textContent = err.message;
  }
}

async function promoteModel(m, button) {
  button.disabled = true;
  try {
    await api(`/v1/models/${encodeURIComponent(m.id)}/promote`, { method: 'POST' });
    await refreshModels();
  } catch (err) {
    $('#models-error').textContent = err.message;
    button.disabled = false;
  }
}

// ---- predict ------------------------------------------------------------------------------------

/** Bumped by each pick of files: a slow batch of an earlier pick stops writing to the page. */
let predictRun = 0;

/** The server's upload limits (GET /v1/predict/limits), asked once per page. */
let predictLimits = null;

async function getPredictLimits() {
  predictLimits ??= api('/v1/predict/limits').catch((err) => {
    predictLimits = null; // ask again next time: a 429 or an outage says nothing about the limits
    throw err;
  });
  return predictLimits;
}

async function predict() {
  const files = [...$('#predict-file').files];
  if (!files.length) return;
  const run = ++predictRun;
  $('#predict-error').textContent = '';
  $('#predictions').replaceChildren();
  $('#predict-timings').textContent = '';
  $('#predict-batch tbody').replaceChildren();
  $('#predict-batch-box').hidden = files.length === 1;
  const img = $('#predict-image');
  if (img.src) URL.revokeObjectURL(img.src);
  img.removeAttribute('src');
  img.hidden = true;
  if (files.length > 1) return predictMany(files, run);
  const file = files[0];
  img.src = URL.createObjectURL(file);
  img.alt = `the image sent: ${file.name}`;
  img.hidden = false;
  try {
    const res = await api('/v1/predict?topK=5', {
      method: 'POST',
      headers: { 'content-type': file.type || 'application/octet-stream' },
      body: file,
    });
    $('#predictions').replaceChildren(
      ...res.predictions.map((p) =>
        el(
          'li',
          {},
          el('span', { className: 'label' }, p.label),
          el('span', { className: 'bar', style: `width:${Math.max(0.1, p.probability * 10)}em` }),
          el('span', { className: 'value' }, pct(p.probability)),
        ),
      ),
    );
    const t = res.timings;
    $('#predict-timings').textContent =
      `model ${res.model.id.slice(0, 8)} · decode ${t.decodeMs.toFixed(1)} ms · queue ${t.queueMs.toFixed(1)} ms · inference ${t.inferMs.toFixed(1)} ms · batch of ${t.batchSize}`;
  } catch (err) {
    $('#predict-error').textContent = err.message;
  }
}

/**
 * Several files: one row each (its top class, or why it has none), in order, sent in requests the
 * server takes whole. A request that fails marks its own files and the rest are still sent; an
 * image the server was too busy to decode is sent again.
 */
async function predictMany(files, run) {
  const tbody = $('#predict-batch tbody');
  const rows = files.map((f) => el('tr', {}, el('td', {}, f.name), el('td', { colSpan: 2, className: 'waiting' }, 'waiting')));
  tbody.replaceChildren(...rows);
  const fail = (i, text) => rows[i].replaceChildren(el('td', {}, files[i].name), el('td', { colSpan: 2, className: 'error' }, text));
  let limits;
  try {
    limits = await getPredictLimits();
  } catch (err) {
    $('#predict-error').textContent = err.message;
    files.forEach((_, i) => fail(i, `not sent: ${err.message}`));
    return;
  }
  const { batches, tooLarge } = packBatches(
    files.map((f) => f.size),
    limits,
  );
  for (const i of tooLarge) fail(i, `BODY_TOO_LARGE: the image is larger than the limit of ${limits.maxBytesPerRequest} bytes`);
  let done = tooLarge.length;
  // An image the server had no room to decode (PREDICT_OVERLOADED in its result: other clients'
  // AVIF uploads, decoded one at a time) goes again in a later request, after the 1 s a refusal's
  // Retry-After says, up to twice, as request() does for a whole request.
  const queue = batches.map((batch) => ({ batch, attempt: 0 }));
  while (queue.length) {
    const { batch, attempt } = queue.shift();
    if (attempt > 0) await new Promise((r) => setTimeout(r, 1000));
    const form = new FormData();
    for (const i of batch) form.append('image', files[i], files[i].name);
    try {
      const res = await api('/v1/predict/batch?topK=1', { method: 'POST', body: form });
      if (run !== predictRun) return;
      const again = [];
      for (const r of res.results) {
        const i = batch[r.index];
        if (r.error?.code === 'PREDICT_OVERLOADED' && attempt < 2) again.push(i);
        else if (r.error) fail(i, `${r.error.code}: ${r.error.message}`);
        else {
          const top = r.predictions[0];
          rows[i].replaceChildren(el('td', {}, files[i].name), el('td', {}, top.label), el('td', { className: 'num' }, pct(top.probability)));
        }
      }
      if (again.length) queue.push({ batch: again, attempt: attempt + 1 });
      done += batch.length - again.length;
      if (res.model) $('#predict-timings').textContent = `model ${res.model.id.slice(0, 8)} · ${done} of ${files.length} images`;
    } catch (err) {
      if (run !== predictRun) return;
      for (const i of batch) fail(i, err.message);
      if (err.status === 401 || err.status === 403) {
        for (const rest of queue) for (const i of rest.batch) fail(i, `not sent: ${err.message}`);
        return;
      }
    }
  }
}

// ---- new-job form: fields over the raw JSON -----------------------------------------------------
// The JSON textarea is what is sent; each field edits one path in it, and editing the JSON fills
// the fields. Settings without a field stay in the JSON untouched.

const fields = () => [...document.querySelectorAll('#new-job [data-path]')];

function getPath(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function setPath(obj, path, value) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] && typeof o[k] === 'object' ? o[k] : (o[k] = {});
  const last = keys.at(-1);
  if (value === undefined) delete o[last];
  else o[last] = value;
  // Drop sections the change left empty.
  if (keys.length > 1 && Object.keys(o).length === 0) delete obj[keys[0]];
}

function readConfig() {
  try {
    const cfg = JSON.parse($('#config').value || '{}');
    return cfg && typeof cfg === 'object' && !Array.isArray(cfg) ? cfg : null;
  } catch {
    return null;
  }
}

function fieldValue(input) {
  if (input.type === 'checkbox') return input.checked ? undefined : false; // unticked: the non-default
  if (input.value === '') return undefined;
  return input.type === 'number' ? Number(input.value) : input.value;
}

function fieldChanged(event) {
  const input = event.target;
  const cfg = readConfig();
  if (!cfg) {
    $('#new-job-error').textContent = 'The raw JSON is not valid; fix it before using the fields.';
    return;
  }
  const path = input.dataset.path;
  if (path === 'dataset.type') {
    const keep = DATASET_KEYS[input.value] ?? [];
    const ds = Object.fromEntries(Object.entries(cfg.dataset ?? {}).filter(([k]) => k === 'type' || keep.includes(k)));
    cfg.dataset = { ...ds, type: input.value };
  } else {
    setPath(cfg, path, fieldValue(input));
  }
  $('#config').value = JSON.stringify(cfg, null, 2);
  clearInvalid(input);
  showDatasetFields();
}

function fillFields() {
  const cfg = readConfig();
  if (!cfg) return;
  for (const input of fields()) {
    const v = getPath(cfg, input.dataset.path);
    if (input.type === 'checkbox') input.checked = v !== false;
    else if (input.dataset.path === 'dataset.type') input.value = v ?? 'synthetic';
    else input.value = v ?? '';
  }
  showDatasetFields();
}

function showDatasetFields() {
  const type = $('#f-dataset-type').value;
  for (const f of document.querySelectorAll('#new-job .field[data-for]')) f.hidden = f.dataset.for !== type;
}

function clearInvalid(input) {
  input.removeAttribute('aria-invalid');
  input.removeAttribute('aria-describedby');
  document.getElementById(`${input.id}-error`)?.remove();
}

/** The new-job form without the last answer's error, marked fields and note. */
function clearFormMessages() {
  $('#new-job-error').textContent = '';
  $('#new-job-raw-error').hidden = true;
  $('#new-job-note').textContent = '';
  for (const input of fields()) clearInvalid(input);
}

/**
 * The open job's config in the form, to change and send: the same run again, or (fineTune) one
 * that starts from the job's newest checkpoint instead of from scratch (`init.fromJob`).
 */
function copyJobToForm(fineTune) {
  const job = state.job;
  if (!job) return;
  const config = structuredClone(job.config);
  if (fineTune) {
    config.name = `${job.name} (fine-tuned)`.slice(0, 200);
    config.init = { ...config.init, fromJob: job.id };
  }
  $('#config').value = JSON.stringify(config, null, 2);
  fillFields();
  clearFormMessages();
  $('#new-job-note').textContent = fineTune
    ? `Filled in from "${job.name}", to start from its weights: change what you need (the data, fewer epochs, a smaller learning rate), then start.`
    : `Filled in from "${job.name}", every setting as it ran: change what you need, then start.`;
  $('#new-job-panel').scrollIntoView({ block: 'start' });
  $('#f-name').focus();
}

/** The field an issue path names: itself, or the field of the first setting under it. */
function fieldFor(path) {
  const all = fields();
  return all.find((f) => f.dataset.path === path) ?? all.find((f) => path && f.dataset.path.startsWith(`${path}.`)) ?? null;
}

function showIssues(body) {
  const issues = body?.error?.issues ?? [];
  let first = null;
  for (const issue of issues) {
    const input = fieldFor(issue.path);
    if (!input) continue;
    input.closest('.field').hidden = false;
    input.setAttribute('aria-invalid', 'true');
    let msg = document.getElementById(`${input.id}-error`);
    if (!msg) {
      msg = el('span', { id: `${input.id}-error`, className: 'field-error' });
      input.closest('.field').append(msg);
    }
    msg.textContent = msg.textContent ? `${msg.textContent}; ${issue.message}` : issue.message;
    input.setAttribute('aria-describedby', msg.id);
    first ??= input;
  }
  // Paths without a field: the raw JSON is where they can be fixed.
  if (issues.some((i) => !fieldFor(i.path))) $('#raw-json').open = true;
  first?.focus();
}

/**
 * A double-click on "Start training" sends the job twice, and at 224 px a duplicate holds a worker
 * for hours. The same config sent again within this long goes with the same Idempotency-Key, so
 * the server answers with the job the first made (POST /v1/jobs); an edit, or a later click, is a
 * new job.
 */
const DOUBLE_SUBMIT_MS = 2000;
let lastSubmit = { text: '', key: '', at: 0 };

function submitKey(text) {
  const now = Date.now();
  if (text !== lastSubmit.text || now - lastSubmit.at > DOUBLE_SUBMIT_MS) {
    // getRandomValues, not randomUUID: the page may be served over plain HTTP beyond localhost.
    const key = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
    lastSubmit = { text, key, at: now };
  }
  return lastSubmit.key;
}

async function submitJob(event) {
  event.preventDefault();
  clearFormMessages();
  const config = readConfig();
  if (!config) {
    $('#new-job-error').textContent = 'The raw JSON is not a valid JSON object.';
    $('#raw-json').open = true;
    return;
  }
  try {
    const body = JSON.stringify(config);
    const job = await api('/v1/jobs', { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': submitKey(body) }, body });
    await refreshJobs();
    openJob(job.id);
  } catch (err) {
    $('#new-job-error').textContent = err.message;
    if (err.body?.error?.code === 'JOB_STORE_QUOTA_EXCEEDED') {
      $('#new-job-error').textContent += '\nUse "Delete finished jobs" under the job list.';
      $('#cleanup').open = true;
    }
    if (err.body && typeof err.body === 'object') {
      const raw = $('#new-job-raw-error');
      raw.querySelector('pre').textContent = JSON.stringify(err.body, null, 2);
      raw.hidden = false;
      showIssues(err.body);
    }
  }
}

// ---- health and the poll loop -------------------------------------------------------------------

async function refreshHealth() {
  const pill = $('#health');
  try {
    await api('/readyz');
    pill.textContent = 'ready';
    pill.className = 'pill ready';
  } catch (err) {
    pill.textContent = 'not ready';
    pill.className = 'pill unready';
    pill.title = err.message;
  }
}

// ---- API keys (admins) --------------------------------------------------------------------------

const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');

/** Admins list, create and revoke keys here: what `qatserve keys` and /v1/keys do. */
async function refreshKeys() {
  $('#keys-panel').hidden = !state.canAdmin;
  if (!state.canAdmin) return;
  // A failed listing (the rate limit, a restart) leaves the rows shown until the next poll.
  const list = await api('/v1/keys');
  syncRows(
    $('#keys tbody'),
    list.items.map((k) => {
      const actions = el('td', { className: 'actions' });
      if (!k.revokedAt) {
        const revoke = el('button', { type: 'button', className: 'secondary' }, 'Revoke');
        revoke.setAttribute('aria-label', `revoke key ${k.name}`);
        revoke.addEventListener('click', () => revokeKey(k.name));
        actions.append(revoke);
      }
      const tr = el(
        'tr',
        {},
        el('td', {}, k.name),
        el('td', { className: 'mono' }, k.prefix),
        el('td', {}, k.scopes.join(', ')),
        el('td', {}, when(k.createdAt)),
        el('td', {}, when(k.lastUsedAt)),
        el('td', {}, when(k.revokedAt)),
        actions,
      );
      tr.dataset.keyName = k.name;
      return tr;
    }),
    (tr) => tr.dataset.keyName,
  );
}

/**
 * Runs a form's request with its submit button disabled: a double-click sends it once. (The
 * second click of a first key's double-click went out without a key once the first had turned
 * auth on, and its 401 asked the user for a key.)
 */
async function whileSubmitting(form, run) {
  const button = form.querySelector('button[type=submit]');
  if (button.disabled) return;
  button.disabled = true;
  try {
    await run();
  } finally {
    button.disabled = false;
  }
}

async function createKey(event) {
  event.preventDefault();
  await whileSubmitting(event.currentTarget, sendNewKey);
}

async function sendNewKey() {
  const name = $('#key-name').value.trim();
  const scopes = ['predict', 'train', 'admin'].filter((s) => $(`#key-${s}`).checked);
  $('#keys-error').textContent = '';
  let created;
  try {
    created = await api('/v1/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, scopes }) });
  } catch (err) {
    $('#keys-error').textContent = err.message;
    return;
  }
  // With no key yet (auth off), this first key turns auth on: the tab goes on with it if it may.
  const adopted = !sessionStorage.getItem(KEY_ITEM) && created.info.scopes.includes('admin');
  if (adopted) sessionStorage.setItem(KEY_ITEM, created.key);
  $('#key-created-note').textContent =
    `Key "${created.info.name}" (${created.info.scopes.join(', ')}): shown this once and stored only as a hash, so copy it now. ` +
    'Send it as "Authorization: Bearer <key>".' +
    (adopted ? ' This tab uses it from now on.' : '');
  $('#key-created-value').textContent = created.key;
  $('#key-copy').textContent = 'Copy';
  $('#key-created').hidden = false;
  $('#key-form').reset();
  refreshKeys().catch(() => {});
}

/**
 * The clipboard is there on https:// and localhost pages only: on a plain-HTTP server reached by
 * another name the key is selected instead, for Ctrl+C, and the button says so.
 */
async function copyKey() {
  const value = $('#key-created-value');
  const button = $('#key-copy');
  try {
    await navigator.clipboard.writeText(value.textContent);
    button.textContent = 'Copied';
  } catch {
    getSelection().selectAllChildren(value);
    button.textContent = 'Selected: press Ctrl+C';
  }
}

/** Revoking leaves the key's jobs running (a rotated key's owner keeps its work); a leaked key's can be cancelled next. */
async function revokeKey(name) {
  if (!confirm(`Revoke key "${name}"? Requests with it are refused from now on; this cannot be undone.`)) return;
  $('#keys-error').textContent = '';
  const offer = $('#cancel-key-jobs');
  offer.hidden = true;
  try {
    const revoked = await api(`/v1/keys/${encodeURIComponent(name)}/revoke`, { method: 'POST' });
    const n = revoked.jobsGoingOn;
    $('#keys-note').textContent =
      `Key "${name}" revoked.${n ? ` ${n} job${n === 1 ? '' : 's'} it posted go${n === 1 ? 'es' : ''} on (queued or running).` : ''}`;
    if (n) {
      offer.textContent = `Cancel its ${n} job${n === 1 ? '' : 's'}`;
      offer.dataset.keyName = name;
      offer.hidden = false;
    }
  } catch (err) {
    $('#keys-error').textContent = err.message;
  }
  refreshKeys().catch(() => {});
}

async function cancelKeyJobs() {
  const offer = $('#cancel-key-jobs');
  const name = offer.dataset.keyName;
  try {
    const revoked = await api(`/v1/keys/${encodeURIComponent(name)}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cancelJobs: true }),
    });
    const n = revoked.jobsCancelled.length;
    $('#keys-note').textContent = `Key "${name}" revoked; cancelled ${n} job${n === 1 ? '' : 's'} it posted (a running one stops at its next step).`;
    offer.hidden = true;
    refreshJobs().catch(() => {});
  } catch (err) {
    $('#keys-error').textContent = err.message;
  }
}

/** Admins see the deployment's workers: none running, or one waiting for disk, is why jobs stay queued. */
async function refreshWorkers() {
  const pill = $('#workers');
  if (!state.canAdmin) {
    pill.hidden = true;
    return;
  }
  try {
    const { workers, away } = await api('/v1/workers');
    const counts = new Map();
    for (const w of workers) counts.set(w.state, (counts.get(w.state) || 0) + 1);
    const waiting = workers.filter((w) => w.state === 'waiting-for-disk');
    // Away: not heard from lately (a restart, a redeploy); jobs only it can run wait for it.
    const awayText = away.length ? `${away.length} away, likely restarting` : '';
    pill.textContent = workers.length
      ? `workers: ${[...counts].map(([s, n]) => `${n} ${s}`).join(' · ')}${awayText ? ` · ${awayText}` : ''}`
      : `no workers: queued jobs wait${awayText ? ` (${awayText})` : ''}`;
    pill.className = `pill ${!workers.length || waiting.length ? 'unready' : 'ready'}`;
    const lines = [
      ...workers.map((w) => `${w.id}: ${w.state}${w.jobId ? ` (job ${w.jobId})` : ''}${w.reason ? ` — ${w.reason}` : ''}`),
      ...away.map((w) => `${w.id}: away, last heard from ${new Date(w.seenAt).toLocaleTimeString()}`),
    ];
    pill.title = lines.join('\n') || 'GET /v1/workers';
  } catch (err) {
    pill.textContent = 'workers: ?';
    pill.className = 'pill';
    pill.title = err.message;
  }
  pill.hidden = false;
}

/** Why the open job, queued, has not started: the jobs ahead of it, and whether any worker runs. */
async function refreshQueuePlace() {
  const job = state.job;
  const line = $('#job-queue');
  if (!job || job.status !== 'queued') {
    line.textContent = '';
    return;
  }
  try {
    const place = await api(`/v1/jobs/${encodeURIComponent(job.id)}/queue`);
    if (state.job?.id !== job.id || state.job.status !== 'queued') return;
    const w = place.workers;
    const ahead = place.position === null ? '' : place.position === 0 ? 'next in line' : `${place.position} job${place.position === 1 ? '' : 's'} ahead`;
    const running = [w.training && `${w.training} training`, w.idle && `${w.idle} idle`, w.waitingForDisk && `${w.waitingForDisk} waiting for disk space`];
    const workers = running.some(Boolean) ? `workers: ${running.filter(Boolean).join(', ')}` : 'no worker is running: it starts when one does';
    const away = w.away ? `${w.away} worker${w.away === 1 ? '' : 's'} away, likely restarting` : '';
    const n = place.withoutFolder;
    const folder = n ? `${n} worker${n === 1 ? ' has' : 's have'} no such image folder: it waits for one that has it` : '';
    line.textContent = [ahead, workers, away, folder].filter(Boolean).join(' · ');
  } catch {
    line.textContent = '';
  }
}

function refreshAll() {
  return Promise.allSettled([refreshJobs(), refreshModels(), refreshHealth(), refreshCompare(), refreshWorkers(), refreshQueuePlace(), refreshKeys()]);
}

async function poll() {
  await refreshAll();
  setTimeout(poll, POLL_MS);
}

$('#config').value = JSON.stringify(EXAMPLE_CONFIG, null, 2);
fillFields();
for (const input of fields()) input.addEventListener(input.tagName === 'SELECT' || input.type === 'checkbox' ? 'change' : 'input', fieldChanged);
$('#config').addEventListener('input', fillFields);
$('#new-job').addEventListener('submit', submitJob);
$('#cancel-job').addEventListener('click', cancelSelected);
$('#resume-job').addEventListener('click', resumeSelected);
$('#delete-job').addEventListener('click', deleteSelected);
$('#rerun-job').addEventListener('click', () => copyJobToForm(false));
$('#finetune-job').addEventListener('click', () => copyJobToForm(true));
$('#cleanup-form').addEventListener('submit', deleteFinished);
$('#export-csv').addEventListener('click', exportCsv);
$('#compare-metric').addEventListener('change', renderCompare);
$('#more-jobs').addEventListener('click', () => {
  state.listed = Math.min(100, state.listed + 20);
  refreshJobs().catch(() => {});
});
$('#more-models').addEventListener('click', () => {
  state.modelsListed = Math.min(100, state.modelsListed + 20);
  refreshModels().catch(() => {});
});
$('#predict-file').addEventListener('change', predict);
$('#api-key-form').addEventListener('submit', saveKey);
$('#key-form').addEventListener('submit', createKey);
$('#cancel-key-jobs').addEventListener('click', cancelKeyJobs);
$('#key-copy').addEventListener('click', copyKey);
const fromHash = /job=([^&]+)/.exec(location.hash);
if (fromHash) openJob(decodeURIComponent(fromHash[1]));
probeAdmin();
poll();
