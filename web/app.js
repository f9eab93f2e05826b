// The dashboard: job list, a job's live loss curve, a form to start a job, and /predict.
// It only uses the public REST API, so what it shows is what any client would see.
import { drawChart } from './chart.js';

const POLL_MS = 1500;
const EXAMPLE_CONFIG = {
  name: 'synthetic-demo',
  dataset: { type: 'synthetic', classes: 4, samplesPerClass: 32 },
  model: { widthMultiplier: 0.35, inputSize: 32 },
  training: { epochs: 1, batchSize: 16 },
};

const $ = (sel) => document.querySelector(sel);
// `listed`: how many of the newest jobs the table shows ("older jobs" raises it; the API caps a page at 100).
const state = { selected: null, points: [], after: 0, listed: 20 };

// The API key, when the server asks for one: kept for this tab only (sessionStorage), sent as a
// Bearer token. A 401 shows the key form; saving a key polls again at once.
const KEY_ITEM = 'qatserve.apiKey';

async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) headers.set('authorization', `Bearer ${key}`);
  const res = await fetch(path, { ...init, headers });
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
  Promise.allSettled([refreshJobs(), refreshSelected().catch(showJobError)]);
}

/** The API's error shape {error: {code, message, issues}} as a readable block. */
function errorText(body, status) {
  const e = body && body.error;
  if (!e) return `HTTP ${status}`;
  const issues = (e.issues || []).map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n');
  return `${e.code}: ${e.message}${issues ? `\n${issues}` : ''}`;
}

function progressText(job) {
  const p = job.progress;
  if (!p.totalSteps) return job.status === 'queued' ? 'waiting for a worker' : '';
  const pct = Math.round((100 * p.step) / p.totalSteps);
  const speed = p.imagesPerSecond ? ` · ${p.imagesPerSecond.toFixed(1)} img/s` : '';
  return `step ${p.step}/${p.totalSteps} (${pct}%) · epoch ${p.epoch}${speed}`;
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

async function refreshJobs() {
  const { jobs, nextCursor } = await api(`/v1/jobs?limit=${state.listed}`);
  const rows = jobs.map((job) => {
    const tr = el('tr', { className: job.id === state.selected ? 'selected' : '' },
      el('td', {}, job.name),
      el('td', {}, el('span', { className: `pill ${job.status}` }, job.status)),
      el('td', {}, progressText(job)),
      el('td', {}, new Date(job.createdAt).toLocaleString()));
    tr.dataset.jobId = job.id;
    tr.addEventListener('click', () => selectJob(job.id));
    return tr;
  });
  $('#jobs tbody').replaceChildren(...rows);
  $('#more-jobs').hidden = !nextCursor || state.listed >= 100;
}

function selectJob(id) {
  if (state.selected === id) return;
  Object.assign(state, { selected: id, points: [], after: 0 });
  location.hash = `job=${id}`;
  $('#job-panel').hidden = false;
  refreshSelected().catch(showJobError);
  refreshJobs().catch(() => {});
}

async function refreshSelected() {
  const id = state.selected;
  if (!id) return;
  const job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
  // Metrics page forward from the newest step seen, so a poll carries only new points. The newest
  // point is fetched again: its validation accuracy lands after the step itself at an epoch end.
  for (let after = Math.max(0, state.after - 1); ;) {
    const page = await api(`/v1/jobs/${encodeURIComponent(id)}/metrics?after=${after}&limit=1000`);
    if (id !== state.selected) return;
    for (const p of page.points) {
      const i = state.points.findIndex((q) => q.step === p.step);
      if (i >= 0) state.points[i] = p; else state.points.push(p);
    }
    if (page.points.length > 0) state.after = page.points[page.points.length - 1].step;
    if (page.nextAfter == null || page.points.length === 0) break;
    after = page.nextAfter;
  }
  renderJob(job);
}

function renderJob(job) {
  $('#job-title').textContent = `${job.name} (${job.id})`;
  const status = $('#job-status');
  status.textContent = job.status;
  status.className = `pill ${job.status}`;
  $('#job-progress').textContent = progressText(job);
  $('#cancel-job').hidden = !['queued', 'running'].includes(job.status);
  $('#job-error').textContent = job.error ? `${job.error.code}: ${job.error.message}` : '';
  $('#job-config').textContent = JSON.stringify(job.config, null, 2);
  const facts = [
    ['backend', job.backend ?? '—'],
    ['attempts', String(job.attempts)],
    ['warnings', String(job.warnings)],
    ['started', job.startedAt ? new Date(job.startedAt).toLocaleString() : '—'],
    ['finished', job.finishedAt ? new Date(job.finishedAt).toLocaleString() : '—'],
  ];
  const lastEval = [...state.points].reverse().find((p) => p.top1 != null);
  if (lastEval) facts.push(['validation top-1', `${(lastEval.top1 * 100).toFixed(1)}%`]);
  if (job.model) {
    facts.push(['model', job.model.id]);
    if (job.model.int8Top1 != null) facts.push(['int8 top-1', `${(job.model.int8Top1 * 100).toFixed(1)}%`]);
    facts.push(['model size', `${(job.model.sizeBytes / 1024).toFixed(0)} KiB`]);
  }
  $('#job-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  drawChart($('#loss-chart'), state.points);
}

function showJobError(err) {
  $('#job-error').textContent = err.message;
}

async function submitJob(event) {
  event.preventDefault();
  $('#new-job-error').textContent = '';
  let config;
  try {
    config = JSON.parse($('#config').value);
  } catch (err) {
    $('#new-job-error').textContent = `Not valid JSON: ${err.message}`;
    return;
  }
  try {
    const job = await api('/v1/jobs', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(config),
    });
    await refreshJobs();
    selectJob(job.id);
  } catch (err) {
    $('#new-job-error').textContent = err.message;
  }
}

async function cancelSelected() {
  try {
    await api(`/v1/jobs/${encodeURIComponent(state.selected)}/cancel`, { method: 'POST' });
    await refreshSelected();
  } catch (err) {
    showJobError(err);
  }
}

async function predict() {
  const file = $('#predict-file').files[0];
  if (!file) return;
  $('#predict-error').textContent = '';
  $('#predictions').replaceChildren();
  try {
    const res = await api('/v1/predict?topK=5', {
      method: 'POST', headers: { 'content-type': file.type || 'application/octet-stream' }, body: file,
    });
    $('#predictions').replaceChildren(...res.predictions.map((p) =>
      el('li', {}, `${p.label} — ${(p.probability * 100).toFixed(1)}%`)));
  } catch (err) {
    $('#predict-error').textContent = err.message;
  }
}

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

async function poll() {
  await Promise.allSettled([refreshJobs(), refreshSelected().catch(showJobError), refreshHealth()]);
  setTimeout(poll, POLL_MS);
}

$('#config').value = JSON.stringify(EXAMPLE_CONFIG, null, 2);
$('#new-job').addEventListener('submit', submitJob);
$('#cancel-job').addEventListener('click', cancelSelected);
$('#more-jobs').addEventListener('click', () => {
  state.listed = Math.min(100, state.listed + 20);
  refreshJobs().catch(() => {});
});
$('#predict-file').addEventListener('change', predict);
$('#api-key-form').addEventListener('submit', saveKey);
const fromHash = /job=([^&]+)/.exec(location.hash);
if (fromHash) selectJob(decodeURIComponent(fromHash[1]));
poll();
