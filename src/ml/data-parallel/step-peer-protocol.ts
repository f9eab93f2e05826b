// Messages between the training thread (rank 0) and its step peers (ranks 1..world-1).
import type { ArchSpec } from '../mobilenet-arch.js';
import type { SgdOptions } from '../optimizer.js';
import type { BackendName } from '../train-api.js';
import type { WeightBits } from '../quant-graph.js';
import type { NamedArray } from '../checkpoint.js';
import type { CollectiveMemory } from './shared-collective.js';
import type { ShardRows } from './shard-step.js';
import type { EvalForward } from '../eval-forward.js';
import type { SourceRows } from '../../data/index.js';

/** workerData of a peer: how to build the same model and optimizer as rank 0. */
export interface PeerInput {
  rank: number;
  memory: CollectiveMemory;
  backend: BackendName;
  /** Rank 0's wasm-training SIMD switch (QATSERVE_WASM_SIMD), so every rank runs the same kernels. */
  wasmSimd: boolean | undefined;
  arch: ArchSpec;
  emaDecay: number;
  seed: number;
  weightBits: WeightBits;
  sgd: SgdOptions;
}

/**
 * This peer's rows of the batch (copies, transferred with the message): as pixels (`x`), as source
 * rows to render (`rows`), or neither: the `next` of the previous step message. `next`: this
 * peer's rows of the following step, to render while it waits inside this one.
 */
export type PeerStep = { type: 'step' } & Omit<ShardRows, 'x'> & { x?: Float32Array; rows?: SourceRows; next?: SourceRows };

/** This peer's rows of one evaluation batch (a copy, transferred); answered by `logits` with the same id. */
export type PeerEvalRows = { type: 'eval'; id: number; x: Float32Array; n: number };

export type ToPeer =
  | { type: 'state'; tensors: NamedArray[]; ranges: Record<string, number[]> }
  | PeerStep
  | { type: 'eval-begin'; forward: EvalForward }
  | PeerEvalRows
  | { type: 'eval-end' }
  | { type: 'close' };

export type FromPeer = { type: 'ready' } | { type: 'synced' } | { type: 'logits'; id: number; logits: Float32Array } | { type: 'error'; message: string };
