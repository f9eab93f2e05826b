// Serving benchmarks for MobileNetV2 1.0 at 224 with random weights and calibrated (realistic)
// activation ranges, exported exactly as a trained model is.
//
//   npx tsx bench/predict.ts model            # model-only latency: batch 1, one ORT thread
//   npx tsx bench/predict.ts http             # HTTP load: autocannon, 16 connections, 20 s, 224x224 JPEG
//   npx tsx bench/predict.ts folder           # a folder's worth of photos: one per request, then batches
//   npx tsx bench/predict.ts all
// Options: --runs N (model, default 300), --seconds S, --connections C, --workers W (pool size),
// --encoding int8|uint8 (weight storage, default both for `model`; for `http` see HTTP_ENCODING),
// --weight-bits 7|8 (http: the served model's weight grid, default the training config's),
// --loop closed|open|both (http, default both), --rate R (open loop: R req/s offered in total,
// default 150), --batch-window MS, --max-batch N (the pool's micro-batching), --images N and
// --batch B (folder: N photos, default 1000, posted one per request and then B per request to
// /v1/predict/batch, default 16, over --connections, default 4 here).
//
// `http` serves from a child process and loads it twice: closed loop (autocannon; each connection
// posts again as soon as it has its answer: the most the service does, and by Little's law p50 is
// about connections / throughput) and open loop (requests due at Poisson arrival times at a fixed
// mean rate, see openLoop: the latency at that load).
// Each measurement prints one comparable line (plus context lines starting with '#').
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { quantGraphToFloatOnnx } from '../src/export/onnx-float.js';
import { quantGraphToQdqOnnx } from '../src/export/onnx-qdq.js';
import { buildSyntheticMobileNetV2, mulberry32, syntheticImages } from '../testkit/synthetic-graph.js';
import { expectedKernels, fusionReport, optimizedOpCounts } from '../src/export/fusion-check.js';
import { MANIFEST_FILE, MODEL_FILE } from '../src/export/manifest.js';
import { writeSyntheticExport } from '../testkit/synthetic-export.js';
import { newModelFromManifest } from '../src/db/model-rows.js';
import type { QuantGraph, WeightBits } from '../src/ml/quant-graph.js';
import { QuantizationSection } from '../src/config/training-config.js';
import { errorsPlugin } from '../src/api/plugins/errors.js';
import { predictRoutes } from '../src/api/routes/predict.js';
import { servingPlugin } from '../src/serving/plugin.js';
import { ServingService } from '../src/serving/prediction-service.js';
import { modelFilesIn } from '../src/serving/model-store.js';
import { MemoryModelStore } from '../testkit/memory-model-store.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '20' },
    /** Default 16 for http, 4 for folder. */
    connections: { type: 'string' },
    workers: { type: 'string', default: '2' },
    encoding: { type: 'string' },
    /** http: closed (as fast as the connections go), open (a fixed offered rate), or both. */
    loop: { type: 'string', default: 'both' },
    /** http, open loop: the total offered request rate (req/s). */
    rate: { type: 'string', default: '150' },
    /** http: the served model's weight grid, 7 or 8 bits (default: the training config's). */
    'weight-bits': { type: 'string' },
    'batch-window': { type: 'string', default: '2' },
    'max-batch': { type: 'string', default: '8' },
    images: { type: 'string', default: '1000' },
    batch: { type: 'string', default: '16' },
  },
});
const mode = positionals[0] ?? 'model';
/**
 * The http bench serves what a job trained with the default config exports: its weight grid
 * (7 bits unless the config says 8) and the storage src/export picks for it (int8 for 7-bit
 * weights, which cannot saturate ORT's u8s8 kernels; for 8-bit ones int8 only where it verifies,
 * so the bench takes uint8, the storage that is exact on every x86 CPU).
 */
const HTTP_WEIGHT_BITS = Number(values['weight-bits'] ?? QuantizationSection.parse({}).weightBits) as WeightBits;
const HTTP_ENCODING = (values.encoding ?? (HTTP_WEIGHT_BITS === 7 ? 'int8' : 'uint8')) as 'int8' | 'uint8';
const SIZE = 224;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function modelLatency(label: string, bytes: Uint8Array, runs: number): Promise<number> {
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const x = new ort.Tensor('float32', syntheticImages(1, SIZE, 42), [1, 3, SIZE, SIZE]);
  const feeds = { [session.inputNames[0]]: x };
  for (let i = 0; i < 30; i++) await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  await session.release();
  times.sort((a, b) => a - b);
  const p50 = percentile(times, 50);
  console.log(
    `predict-model ${label}: p50 ${p50.toFixed(2)} ms  p90 ${percentile(times, 90).toFixed(2)} ms  min ${times[0].toFixed(2)} ms  (${runs} runs, batch 1, 1 thread, ${(bytes.length / 1e6).toFixed(2)} MB)`,
  );
  return p50;
}

async function benchModel(graph: QuantGraph): Promise<void> {
  const runs = Number(values.runs);
  const encodings = values.encoding ? [values.encoding as 'int8' | 'uint8'] : (['int8', 'uint8'] as const);
  const fp32 = quantGraphToFloatOnnx(graph);
  for (const enc of encodings) {
    const bytes = quantGraphToQdqOnnx(graph, { weightEncoding: enc });
    const fusion = fusionReport(await optimizedOpCounts(bytes), expectedKernels(graph));
    console.log(
      `# ${enc}: QLinearConv ${fusion.qlinearConvs}/${fusion.convs}, QLinearAdd ${fusion.qlinearAdds}/${fusion.adds}, fully fused: ${fusion.fullyFused}, size ${((100 * bytes.length) / fp32.length).toFixed(1)}% of fp32`,
    );
    await modelLatency(`int8 QDQ (${enc} weight storage)`, bytes, runs);
  }
  await modelLatency('fp32', fp32, runs);
}

async function writeModel(dir: string, graph: QuantGraph, encoding: 'int8' | 'uint8'): Promise<MemoryModelStore> {
  const { manifest } = await writeSyntheticExport(dir, graph, { jobId: 'bench', weightEncoding: encoding, measureFusion: true });
  const store = new MemoryModelStore(modelFilesIn(dir));
  store.add({ ...newModelFromManifest(manifest, { id: 'bench', onnxKey: MODEL_FILE, manifestKey: MANIFEST_FILE }), createdAt: new Date(), promotedAt: null });
  return store;
}

interface ServerStats {
  requests: number;
  cpuMs: number;
  /** Server process CPU (every thread: event loop, libuv/sharp, ORT workers) per answered request. */
  cpuMsPerRequest: number;
  /** Share of wall time the server's event loop was busy. */
  eventLoopUtilization: number;
  decodeMs: number;
  inferMs: number;
  queueMs: number;
  batchSize: number;
}

type ToServer = { type: 'stats' } | { type: 'stop' };
type FromServer = { type: 'ready'; url: string } | { type: 'stats'; stats: ServerStats };

/**
 * The server side of `http`, run in a child process: a real client is another process, and
 * autocannon in the server's process would share its event loop and skew both sides.
 */
async function serveForBench(graph: QuantGraph): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'qatserve-bench-'));
  const store = await writeModel(dir, graph, HTTP_ENCODING);
  const serving = new ServingService({
    store,
    size: Number(values.workers),
    batchWindowMs: Number(values['batch-window']),
    maxBatch: Number(values['max-batch']),
    pollMs: 0,
  });
  const app = Fastify({ logger: false });
  await app.register(errorsPlugin);
  await app.register(servingPlugin, { service: serving });
  await app.register(predictRoutes);
  // Per-response timings, read off the answer object before it is serialized.
  let sums = { n: 0, decodeMs: 0, inferMs: 0, queueMs: 0, batchSize: 0 };
  app.addHook('preSerialization', async (_req, _reply, payload: unknown) => {
    const t = (payload as { timings?: { decodeMs: number; inferMs: number; queueMs: number; batchSize: number } }).timings;
    if (t) {
      sums.n++;
      sums.decodeMs += t.decodeMs;
      sums.inferMs += t.inferMs;
      sums.queueMs += t.queueMs;
      sums.batchSize += t.batchSize;
    }
    return payload;
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  let cpu = process.cpuUsage();
  let elu = performance.eventLoopUtilization();
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void app
      .close()
      .then(() => rm(dir, { recursive: true, force: true }))
      .finally(() => process.exit(0));
  };
  // Also when the parent dies without 'stop': no orphan server lingers on a shared machine.
  process.once('disconnect', stop);
  process.on('message', (msg: ToServer) => {
    if (msg.type === 'stats') {
      const c = process.cpuUsage(cpu);
      const n = Math.max(1, sums.n);
      const stats: ServerStats = {
        requests: sums.n,
        cpuMs: (c.user + c.system) / 1000,
        cpuMsPerRequest: (c.user + c.system) / 1000 / n,
        eventLoopUtilization: performance.eventLoopUtilization(elu).utilization,
        decodeMs: sums.decodeMs / n,
        inferMs: sums.inferMs / n,
        queueMs: sums.queueMs / n,
        batchSize: sums.batchSize / n,
      };
      process.send!({ type: 'stats', stats } satisfies FromServer);
      sums = { n: 0, decodeMs: 0, inferMs: 0, queueMs: 0, batchSize: 0 };
      cpu = process.cpuUsage();
      elu = performance.eventLoopUtilization();
    } else if (msg.type === 'stop') stop();
  });
  process.send!({ type: 'ready', url } satisfies FromServer);
}

/** Busy CPU time of the whole machine so far, in ms (Linux /proc/stat; null elsewhere). */
async function machineCpuMs(): Promise<number | null> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0];
    // cpu user nice system idle iowait irq softirq steal guest guest_nice: guest time is already in
    // user, so busy = user + nice + system + irq + softirq + steal.
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const busy = f.reduce((a, v, i) => (i === 3 || i === 4 ? a : a + v), 0);
    return (busy * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

function nextMessage<T extends FromServer['type']>(child: ChildProcess, type: T): Promise<Extract<FromServer, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: FromServer) => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m as Extract<FromServer, { type: T }>);
    };
    const onExit = (code: number | null) => reject(new Error(`bench server exited (code ${code}) before '${type}'`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

interface LoadResult {
  p50: number;
  p99: number;
  reqPerSec: number;
  errors: number;
  total: number;
  /** Context for the '#' line. */
  note: string;
}

const fmtMs = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));

/**
 * Open-loop load: requests are due at Poisson arrival times averaging `rate` per second whether or
 * not earlier ones have been answered, over at most `connections` keep-alive connections (a due
 * request waits for a free one). Latency runs from the moment the client issues the request, so
 * waiting for a free connection counts against the service; the client's own timer lateness does
 * not (it is reported beside). (autocannon's overallRate is not
 * this: each connection sends its per-second quota back to back at the start of every second, and
 * its histogram then adds coordinated-omission samples at a 1 ms interval.)
 */
/**
 * One keep-alive HTTP/1.1 connection sending a prebuilt request and reading just the status line
 * and Content-Length of each answer: about autocannon's cost per request, where node:http cost
 * three times as much CPU on the two cores the server needs.
 */
class RawConnection {
  private socket: net.Socket | null = null;
  private chunks: Buffer[] = [];
  private received = 0;
  private done: ((status: number) => void) | null = null;

  constructor(
    private readonly port: number,
    private readonly host: string,
  ) {}

  get idle(): boolean {
    return this.done === null;
  }

  send(request: Buffer, done: (status: number) => void): void {
    this.done = done;
    this.chunks = [];
    this.received = 0;
    if (!this.socket || this.socket.destroyed) {
      const socket = net.connect(this.port, this.host);
      socket.setNoDelay(true);
      socket.on('data', (d: Buffer) => this.onData(d));
      // A dropped connection fails the request in flight (status 0); the next one reconnects.
      socket.on('close', () => {
        if (this.socket === socket) this.socket = null;
        this.finish(0);
      });
      socket.on('error', () => socket.destroy());
      this.socket = socket;
    }
    this.socket.write(request);
  }

  close(): void {
    this.socket?.destroy();
  }

  private onData(d: Buffer): void {
    this.chunks.push(d);
    this.received += d.length;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.chunks = [all];
    const headerEnd = all.indexOf('\r\n\r\n');
    if (headerEnd < 0) return;
    const head = all.subarray(0, headerEnd).toString('latin1');
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!length) {
      this.socket?.destroy(); // the bench server always sends Content-Length
      return;
    }
    if (this.received >= headerEnd + 4 + Number(length[1])) this.finish(Number(head.slice(9, 12)));
  }

  private finish(status: number): void {
    const done = this.done;
    this.done = null;
    done?.(status);
  }
}

/**
 * Open-loop load: requests are due at Poisson arrival times averaging `rate` per second whether or
 * not earlier ones have been answered, over at most `connections` keep-alive connections (a due
 * request waits for a free one). Latency runs from the moment the client issues the request, so
 * waiting for a free connection counts against the service; the client's own timer lateness does
 * not (it is reported beside). (autocannon's overallRate is not this: each connection sends its
 * per-second quota back to back at the start of every second, and its histogram then adds
 * coordinated-omission samples at a 1 ms interval.)
 */
async function openLoop(url: string, body: Buffer, rate: number, seconds: number, connections: number): Promise<LoadResult> {
  const target = new URL(url);
  const request = Buffer.concat([
    Buffer.from(`POST ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nContent-Type: image/jpeg\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'),
    body,
  ]);
  const conns = Array.from({ length: connections }, () => new RawConnection(Number(target.port), target.hostname));
  const waiting: number[] = []; // issue times of requests waiting for a free connection
  const rand = mulberry32(7);
  const latencies: number[] = [];
  let errors = 0;
  let lateMs = 0;
  let sent = 0;
  let answered = 0;
  let allAnswered: () => void = () => {};
  const start = performance.now();
  const end = start + seconds * 1000;
  let scheduling = true;
  const run = (conn: RawConnection, t0: number) => {
    conn.send(request, (status) => {
      if (status === 200) latencies.push(performance.now() - t0);
      else errors++;
      answered++;
      const next = waiting.shift();
      if (next !== undefined) run(conn, next);
      else if (!scheduling && answered === sent) allAnswered();
    });
  };
  const issue = (due: number) => {
    const t0 = performance.now();
    lateMs += t0 - due;
    sent++;
    const conn = conns.find((c) => c.idle);
    if (conn) run(conn, t0);
    else waiting.push(t0);
  };
  let next = start;
  await new Promise<void>((resolve) => {
    const tick = () => {
      while (next <= performance.now() && next < end) {
        issue(next);
        next += (-Math.log(1 - rand()) * 1000) / rate;
      }
      if (next >= end) resolve();
      else setTimeout(tick, Math.max(0, next - performance.now()));
    };
    tick();
  });
  scheduling = false;
  if (answered < sent) await new Promise<void>((resolve) => (allAnswered = resolve));
  const elapsed = (performance.now() - start) / 1000;
  for (const c of conns) c.close();
  latencies.sort((a, b) => a - b);
  return {
    p50: latencies.length ? percentile(latencies, 50) : NaN,
    p99: latencies.length ? percentile(latencies, 99) : NaN,
    reqPerSec: latencies.length / elapsed,
    errors,
    total: sent,
    note: `, sends ${(lateMs / Math.max(1, sent)).toFixed(2)} ms after their due time on average`,
  };
}

/** The bench server in a child process (see serveForBench); `stop` ends it. */
async function startBenchServer(): Promise<{ url: string; child: ChildProcess; stop: () => Promise<void> }> {
  const args = [
    'http-server',
    '--encoding',
    HTTP_ENCODING,
    '--weight-bits',
    String(HTTP_WEIGHT_BITS),
    '--workers',
    values.workers,
    '--batch-window',
    values['batch-window'],
    '--max-batch',
    values['max-batch'],
  ];
  // Same script, same loader flags (tsx), so the server runs exactly this code.
  const child = fork(fileURLToPath(import.meta.url), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { url } = await nextMessage(child, 'ready').catch((err: Error) => {
    child.kill();
    throw err;
  });
  const stop = async () => {
    if (child.exitCode !== null) return;
    child.send({ type: 'stop' } satisfies ToServer);
    await new Promise((resolve) => child.once('exit', resolve));
  };
  return { url, child, stop };
}

/**
 * Photos as a user has them in a folder: 100 distinct JPEGs of the sizes phones and datasets give
 * (500x375 to 640x480, ~100 KB), posted as multipart files the way `curl -F image=@...` does.
 */
async function folderPhotos(): Promise<Buffer[]> {
  const sizes = [
    [500, 375],
    [375, 500],
    [640, 480],
    [333, 500],
    [500, 333],
    [420, 420],
  ];
  const rng = mulberry32(7);
  return Promise.all(
    Array.from({ length: 100 }, (_, i) => {
      const [w, h] = sizes[i % sizes.length];
      const px = Buffer.alloc(w * h * 3);
      for (let k = 0; k < px.length; k++) px[k] = (Math.sin(k * 0.001 * (1 + (i % 7))) * 60 + 128 + (rng() - 0.5) * 90) & 255;
      return sharp(px, { raw: { width: w, height: h, channels: 3 } })
        .jpeg({ quality: 88 })
        .toBuffer();
    }),
  );
}

/** N photos through the API: one per request to /v1/predict, then B per request to /v1/predict/batch. */
async function benchFolder(): Promise<void> {
  const images = Number(values.images);
  const batch = Number(values.batch);
  const connections = Number(values.connections ?? 4);
  const server = await startBenchServer();
  try {
    const photos = await folderPhotos();
    const kb = photos.reduce((s, p) => s + p.length, 0) / photos.length / 1024;
    console.log(
      `# server in a child process: MobileNetV2 1.0 @ ${SIZE}, ${values.workers} inference workers, max batch ${values['max-batch']}, no rate limit; ${images} photos (100 distinct JPEGs, 333x500 to 640x480, ${kb.toFixed(0)} KB on average) over ${connections} connections`,
    );
    const run = async (perRequest: number, quiet = false): Promise<void> => {
      let next = 0;
      let answered = 0;
      let failed = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: connections }, async () => {
          while (next < images) {
            const first = next;
            const end = Math.min(images, first + perRequest);
            next = end;
            const form = new FormData();
            for (let i = first; i < end; i++) form.append('image', new Blob([new Uint8Array(photos[i % photos.length])], { type: 'image/jpeg' }), `${i}.jpg`);
            const res = await fetch(`${server.url}/v1/predict${perRequest > 1 ? '/batch' : ''}`, { method: 'POST', body: form });
            const body = (await res.json()) as { results?: Array<{ predictions?: unknown }> };
            const ok = res.status === 200 ? (body.results ? body.results.filter((r) => r.predictions).length : 1) : 0;
            answered += ok;
            failed += end - first - ok;
          }
        }),
      );
      const s = (performance.now() - t0) / 1000;
      if (quiet) return;
      const how = perRequest > 1 ? `batches of ${perRequest} (/v1/predict/batch)` : 'one per request (/v1/predict)';
      console.log(
        `predict-folder ${images} photos, ${how}, ${connections} connections: ${s.toFixed(2)} s  ${(answered / s).toFixed(1)} images/s  failed ${failed}  (${Math.ceil(images / perRequest)} requests)`,
      );
    };
    await run(1, true); // warm-up: JIT, sharp's pools, the model's first runs
    await run(1);
    await run(batch);
  } finally {
    await server.stop();
    if (server.child.exitCode === null) server.child.kill();
  }
}

async function benchHttp(): Promise<void> {
  const { url, child, stop } = await startBenchServer();
  try {
    const raw = Buffer.alloc(SIZE * SIZE * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + (i >> 10)) & 255;
    const jpeg = await sharp(raw, { raw: { width: SIZE, height: SIZE, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const connections = Number(values.connections ?? 16);
    const seconds = Number(values.seconds);
    console.log(
      `# server in a child process: MobileNetV2 1.0 @ ${SIZE}, ${HTTP_WEIGHT_BITS}-bit weights in ${HTTP_ENCODING} storage, ${values.workers} inference workers, batch window ${values['batch-window']} ms, max batch ${values['max-batch']}; client in this process, ${jpeg.length}-byte ${SIZE}x${SIZE} JPEG`,
    );
    const load = async (rate?: number) => {
      // Warm-up (first runs, JIT, sharp's pools), then reset the server's counters.
      await autocannon({ url: `${url}/v1/predict`, method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: jpeg, connections, duration: 2 });
      child.send({ type: 'stats' } satisfies ToServer);
      await nextMessage(child, 'stats');
      const clientCpu = process.cpuUsage();
      const machine0 = await machineCpuMs();
      const t0 = performance.now();
      let result: LoadResult;
      if (rate) result = await openLoop(`${url}/v1/predict`, jpeg, rate, seconds, connections);
      else {
        const r = await autocannon({
          url: `${url}/v1/predict`,
          method: 'POST',
          headers: { 'content-type': 'image/jpeg' },
          body: jpeg,
          connections,
          duration: seconds,
        });
        result = {
          p50: r.latency.p50,
          p99: r.latency.p99,
          reqPerSec: r.requests.average,
          errors: r.errors + r.timeouts + r.non2xx,
          total: r.requests.total,
          note: '',
        };
      }
      child.send({ type: 'stats' } satisfies ToServer);
      const { stats } = await nextMessage(child, 'stats');
      const wallMs = performance.now() - t0;
      const machine1 = await machineCpuMs();
      const c = process.cpuUsage(clientCpu);
      const clientMs = (c.user + c.system) / 1000 / Math.max(1, result.total);
      // The machine is shared: CPU used by other processes during the run, in cores.
      const others = machine0 && machine1 ? (machine1 - machine0 - stats.cpuMs - (c.user + c.system) / 1000) / wallMs : NaN;
      const workload = rate
        ? `open loop, ${rate} req/s offered (Poisson arrivals) over at most ${connections} connections`
        : `closed loop, ${connections} connections (autocannon)`;
      console.log(
        `predict-http ${workload}, ${seconds} s: p50 ${fmtMs(result.p50)} ms  p99 ${fmtMs(result.p99)} ms  ${result.reqPerSec.toFixed(1)} req/s  errors ${result.errors}  (${result.total} requests)`,
      );
      console.log(
        `#   server: ${stats.cpuMsPerRequest.toFixed(2)} ms CPU/request (all threads), event loop ${(100 * stats.eventLoopUtilization).toFixed(0)}% busy; per request: decode ${stats.decodeMs.toFixed(2)} ms, infer ${stats.inferMs.toFixed(2)} ms (batch ${stats.batchSize.toFixed(2)}), queue ${stats.queueMs.toFixed(2)} ms; client ${clientMs.toFixed(2)} ms CPU/request${result.note}; other processes ${Number.isNaN(others) ? '?' : Math.max(0, others).toFixed(2)} of ${availableParallelism()} cores`,
      );
    };
    if (values.loop !== 'open') await load();
    if (values.loop !== 'closed') await load(Number(values.rate));
    await stop();
  } finally {
    if (child.exitCode === null) child.kill();
  }
}

const buildGraph = (weightBits?: WeightBits) =>
  buildSyntheticMobileNetV2({ width: 1.0, inputSize: SIZE, numClasses: 1000, seed: 1, calibrationImages: 1, ...(weightBits ? { weightBits } : {}) });
if (mode === 'http-server') await serveForBench(buildGraph(HTTP_WEIGHT_BITS));
if (mode === 'model' || mode === 'all') {
  const t0 = Date.now();
  const graph = buildGraph();
  console.log(
    `# MobileNetV2 1.0 @ ${SIZE}, 1000 classes, random weights, ranges calibrated on 1 image (${Date.now() - t0} ms); ${ort.env.versions?.common ?? ''}`,
  );
  await benchModel(graph);
}
if (mode === 'http' || mode === 'all') await benchHttp();
if (mode === 'folder' || mode === 'all') await benchFolder();
