// Training steps split over several threads (TRAIN_THREADS): rank 0 is the calling thread, ranks
// 1..world-1 are step peers (step-peer-worker.ts), each with its own tfjs backend and model
// replica. Each step, rank 0 posts every peer its rows of the batch, then trains its own; they meet
// at the collective's exchanges inside the step (shard-step.ts). An evaluation is split the same
// way (each rank the logits of its rows; the replicas are equal after every step); checkpoints
// stay on rank 0.
//
//   const dp = await DataParallelStep.open({ world: 2, ... });
//   await dp.sync(model, opt);          // after restoring a checkpoint: peers take rank 0's state
//   const loss = dp.step(input);        // synchronous, like trainStep
//   const loss = dp.stepSources(input, next);  // rows as source images; next step's rendered in this one's waits
//   dp.evalBegin(forward); await dp.forwardRows(x, n, size, classes, local); dp.evalEnd();
//   await dp.close();
import type { Worker } from 'node:worker_threads';
import { startThread } from '../../start-thread.js';
import type { MobileNetV2 } from '../mobilenet-v2.js';
import { allConvs } from '../mobilenet-arch.js';
import type { MomentumSgd, SgdParam } from '../optimizer.js';
import { snapshotState } from '../model-state.js';
import type { BackendName, StepBatch } from '../train-api.js';
import { allocateCollectiveMemory, DataParallelError, SharedCollective, type BarrierWaits } from './shared-collective.js';
import { batchShard, gradientLength, trainShardStep, type ShardRows } from './shard-step.js';
import type { FromPeer, PeerInput, PeerStep, ToPeer } from './step-peer-protocol.js';
import type { EvalForward } from '../eval-forward.js';
import { shardRows } from './collective-math.js';
import { sliceSourceRows, type SourceRows } from '../../data/index.js';
import { StepRows } from './step-rows.js';

/** A step whose rows come as source images and augmentations (src/data/source-rows.ts), not pixels. */
export type SourceStep = Omit<StepBatch, 'x'> & { rows: SourceRows };

export interface DataParallelOptions {
  /** Threads the step is split over (2 or more). */
  world: number;
  backend: BackendName;
  model: MobileNetV2;
  opt: MomentumSgd;
  params: SgdParam[];
  emaDecay: number;
  seed: number;
}

interface Peer {
  worker: Worker;
  /** Set when the thread ended or reported an error; the next step fails with it. */
  failure: string | null;
  exited: boolean;
  waiters: Array<{ want: FromPeer['type']; id?: number; resolve: (m: FromPeer) => void; reject: (e: Error) => void }>;
}

export class DataParallelStep {
  private constructor(
    private readonly o: DataParallelOptions,
    private readonly coll: SharedCollective,
    private readonly peers: Peer[],
  ) {
    this.ownRows = new StepRows(o.model.arch.inputSize);
  }

  private evalIds = 0;
  private readonly ownRows: StepRows;
  /** The source rows whose shares the peers and rank 0 are rendering ahead (the last stepSources' `next`). */
  private prepared: SourceRows | null = null;

  get world(): number {
    return this.o.world;
  }

  static async open(o: DataParallelOptions): Promise<DataParallelStep> {
    const arch = o.model.arch;
    // The widest exchange: a BN layer's rows, means, M2s, minima and maxima.
    const maxChannels = Math.max(...allConvs(arch).map((c) => c.outC));
    const memory = allocateCollectiveMemory(o.world, 1 + 4 * maxChannels, gradientLength(o.params));
    const peers: Peer[] = [];
    const dp = new DataParallelStep(o, new SharedCollective(memory, 0), peers);
    const wasmSimd = o.backend === 'wasm' ? (await import('../backends/wasm-training/simd.js')).simdEnabled() : undefined;
    for (let rank = 1; rank < o.world; rank++) {
      const input: PeerInput = {
        rank,
        memory,
        backend: o.backend,
        wasmSimd,
        arch,
        emaDecay: o.emaDecay,
        seed: o.seed,
        weightBits: o.model.weightBits,
        sgd: o.opt.opts,
      };
      const peer: Peer = { worker: startThread(import.meta.url, 'step-peer-worker', input), failure: null, exited: false, waiters: [] };
      const fail = (why: string) => {
        peer.failure ??= why;
        for (const w of peer.waiters.splice(0)) w.reject(new DataParallelError('TRAIN_PEER_FAILED', `training thread ${rank}: ${why}`));
      };
      peer.worker.on('message', (m: FromPeer) => {
        if (m.type === 'error') return fail(m.message);
        const i = peer.waiters.findIndex((w) => w.want === m.type && (m.type !== 'logits' || w.id === m.id));
        if (i >= 0) peer.waiters.splice(i, 1)[0].resolve(m);
      });
      peer.worker.on('error', (err) => fail(err.message));
      peer.worker.on('exit', (code) => {
        peer.exited = true;
        fail(`exited (code ${code})`);
      });
      peers.push(peer);
    }
    try {
      await Promise.all(peers.map((p) => dp.expect(p, 'ready')));
    } catch (err) {
      await dp.close();
      throw err;
    }
    return dp;
  }

  private expect(p: Peer, want: FromPeer['type'], id?: number): Promise<FromPeer> {
    if (p.failure) return Promise.reject(new DataParallelError('TRAIN_PEER_FAILED', p.failure));
    return new Promise((resolve, reject) => p.waiters.push({ want, id, resolve, reject }));
  }

  private post(p: Peer, m: ToPeer, transfer: ArrayBuffer[] = []): void {
    if (p.failure) throw new DataParallelError('TRAIN_PEER_FAILED', `a training thread failed: ${p.failure}`);
    p.worker.postMessage(m, transfer);
  }

  /** Gives every peer rank 0's weights, optimizer state and activation ranges. */
  async sync(model: MobileNetV2, opt: MomentumSgd): Promise<void> {
    const tensors = await snapshotState(model, opt);
    const ranges = model.ranges.toJSON();
    await Promise.all(
      this.peers.map((p) => {
        const done = this.expect(p, 'synced');
        this.post(p, { type: 'state', tensors, ranges });
        return done;
      }),
    );
  }

  /** One optimizer step over the whole batch; returns its loss. Every replica takes the same update. */
  step(s: StepBatch): number {
    this.prepared = null;
    this.ownRows.drop();
    for (let rank = 1; rank < this.o.world; rank++) {
      const rows = batchShard(s, rank, this.o.world);
      const x = rows.x.slice();
      const msg: PeerStep = { type: 'step', ...rows, x, y: rows.y.slice() };
      this.post(this.peers[rank - 1], msg, [x.buffer]);
    }
    return this.trainRank0(() => batchShard(s, 0, this.o.world));
  }

  /**
   * step() for a batch given as source rows: every rank renders its own rows. With `next` (the
   * following step's batch, when it is already there), each rank renders its rows of that batch
   * while it waits at this step's barriers, and the following step starts with them ready. The
   * render is the one the batch thread would have done, so the step is the same bit for bit.
   */
  stepSources(s: SourceStep, next: SourceRows | null): number {
    const { rows: batch, ...step } = s;
    const ready = this.prepared === batch;
    this.prepared = next;
    const world = this.o.world;
    const shard = (rank: number) => {
      const { start, end } = shardRows(s.n, rank, world);
      return { y: s.y.slice(start, end), n: end - start, offset: start, total: s.n, start, end };
    };
    const nextShard = (rank: number) => next && { rows: next, ...shardRows(next.images.length, rank, world) };
    for (let rank = 1; rank < world; rank++) {
      const { start, end, ...rows } = shard(rank);
      const own = ready ? undefined : sliceSourceRows(batch, start, end);
      const ahead = nextShard(rank);
      const after = ahead ? sliceSourceRows(ahead.rows, ahead.start, ahead.end) : undefined;
      const transfer = [own, after].flatMap((r) => (r ? [r.bytes.buffer as ArrayBuffer] : []));
      this.post(this.peers[rank - 1], { type: 'step', ...step, ...rows, rows: own, next: after }, transfer);
    }
    return this.trainRank0(() => {
      const { start, end, ...rows } = shard(0);
      const x = this.ownRows.take(ready ? null : { rows: batch, start, end });
      const ahead = nextShard(0);
      if (ahead) this.ownRows.prepare(ahead, this.coll);
      return { ...step, ...rows, x };
    });
  }

  /** Rank 0's part of a step, on the rows `own` gives. */
  private trainRank0(own: () => ShardRows): number {
    try {
      return trainShardStep({ ...own(), model: this.o.model, opt: this.o.opt, params: this.o.params }, this.coll);
    } catch (err) {
      this.coll.abort(`rank 0: ${(err as Error).message}`);
      throw err;
    } finally {
      this.coll.setIdleWork(null);
    }
  }

  /**
   * Evaluation over the ranks: until evalEnd, forwardRows computes each batch's logits with every
   * rank taking its rows (the same split as a step's), so an evaluation uses the cores training
   * does. A row's logits do not depend on the rows beside it (running BN statistics, frozen
   * ranges), and the int8 graph's arithmetic is integer, so the result is the one-thread result.
   */
  evalBegin(forward: EvalForward): void {
    for (const p of this.peers) this.post(p, { type: 'eval-begin', forward });
  }

  /**
   * Logits (n rows of `classes`) of `x`: rank 0's rows by `local`, the other ranks' on the peers
   * at the same time.
   */
  async forwardRows(x: Float32Array, n: number, size: number, classes: number, local: (x: Float32Array, n: number) => Float32Array): Promise<Float32Array> {
    const per = size * size * 3;
    const out = new Float32Array(n * classes);
    const answers: Array<{ start: number; answer: Promise<FromPeer> }> = [];
    for (let rank = 1; rank < this.o.world; rank++) {
      const { start, end } = shardRows(n, rank, this.o.world);
      if (end <= start) continue;
      const id = this.evalIds++;
      const rows = x.slice(start * per, end * per);
      const answer = this.expect(this.peers[rank - 1], 'logits', id);
      // Awaited below; a peer that fails meanwhile must not surface as an unhandled rejection first.
      answer.catch(() => {});
      this.post(this.peers[rank - 1], { type: 'eval', id, x: rows, n: end - start }, [rows.buffer]);
      answers.push({ start, answer });
    }
    const own = shardRows(n, 0, this.o.world);
    if (own.end > own.start) out.set(local(x.subarray(own.start * per, own.end * per), own.end - own.start), own.start * classes);
    for (const { start, answer } of answers) {
      const m = await answer;
      if (m.type === 'logits') out.set(m.logits, start * classes);
    }
    return out;
  }

  /** Ends an evaluation: the peers free what evalBegin built. */
  evalEnd(): void {
    for (const p of this.peers) if (!p.failure) this.post(p, { type: 'eval-end' });
  }

  /** Every rank's time at the steps' barriers since the last reset (between steps). */
  barrierWaits(): BarrierWaits[] {
    return this.coll.barrierWaits();
  }

  resetBarrierWaits(): void {
    this.coll.resetBarrierWaits();
  }

  /** Ends the peers (idempotent). */
  async close(): Promise<void> {
    await Promise.all(
      this.peers.map(async (p) => {
        if (p.exited) return;
        p.failure ??= 'closed';
        const exited = new Promise<void>((r) => p.worker.once('exit', () => r()));
        try {
          p.worker.postMessage({ type: 'close' } satisfies ToPeer);
        } catch {
          // Already gone.
        }
        // A peer stuck in a failed step would never read 'close'.
        const t = setTimeout(() => void p.worker.terminate(), 5000);
        await exited;
        clearTimeout(t);
      }),
    );
  }
}
