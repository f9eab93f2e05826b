// A step peer: a thread with its own tfjs backend and its own replica of the model and optimizer,
// training its rows of every batch in lockstep with rank 0 (data-parallel-step.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { selectBackend } from '../backend.js';
import { MobileNetV2 } from '../mobilenet-v2.js';
import { MomentumSgd, type SgdParam } from '../optimizer.js';
import { restoreState } from '../model-state.js';
import { SharedCollective } from './shared-collective.js';
import { trainShardStep } from './shard-step.js';
import type { FromPeer, PeerInput, ToPeer } from './step-peer-protocol.js';
import { rowLogits, type RowLogits } from '../eval-forward.js';
import { StepRows } from './step-rows.js';
import type { SourceRows } from '../../data/index.js';

const all = (rows: SourceRows) => ({ rows, start: 0, end: rows.images.length });

const input = workerData as PeerInput;
const port = parentPort!;
const post = (m: FromPeer) => port.postMessage(m);

async function main(): Promise<void> {
  await selectBackend({ prefer: input.backend, wasmSimd: input.wasmSimd });
  const model = new MobileNetV2(input.arch, input.emaDecay, input.seed, input.weightBits);
  const opt = new MomentumSgd(input.sgd);
  const params: SgdParam[] = [...model.params.values()]
    .filter((p) => p.trainable)
    .map((p) => ({ name: p.name, variable: p.variable, decay: p.role === 'weight' }));
  const coll = new SharedCollective(input.memory, input.rank);
  const stepRows = new StepRows(input.arch.inputSize);
  // Between eval-begin and eval-end: the evaluation's forward pass (and the int8 graph it built).
  let evalRows: RowLogits | null = null;
  port.on('message', (m: ToPeer) => {
    if (m.type === 'state') {
      try {
        restoreState(model, opt, new Map(m.tensors.map((t) => [t.name, t])), true);
        model.ranges.load(m.ranges);
        post({ type: 'synced' });
      } catch (err) {
        post({ type: 'error', message: (err as Error).message });
      }
    } else if (m.type === 'step') {
      try {
        if (m.x) stepRows.drop();
        const x = m.x ?? stepRows.take(m.rows ? all(m.rows) : null);
        if (m.next) stepRows.prepare(all(m.next), coll);
        trainShardStep({ ...m, x, model, opt, params }, coll);
      } catch (err) {
        // Wake rank 0 (and the other peers) instead of leaving them at a barrier.
        coll.abort(`rank ${input.rank}: ${(err as Error).message}`);
      } finally {
        coll.setIdleWork(null);
      }
    } else if (m.type === 'eval-begin') {
      try {
        evalRows?.dispose();
        evalRows = rowLogits(model, m.forward);
      } catch (err) {
        post({ type: 'error', message: (err as Error).message });
      }
    } else if (m.type === 'eval') {
      try {
        if (!evalRows) throw new Error('evaluation rows before eval-begin');
        const logits = evalRows.logits(m.x, m.n);
        port.postMessage({ type: 'logits', id: m.id, logits } satisfies FromPeer, [logits.buffer]);
      } catch (err) {
        post({ type: 'error', message: (err as Error).message });
      }
    } else if (m.type === 'eval-end') {
      evalRows?.dispose();
      evalRows = null;
    } else {
      evalRows?.dispose();
      opt.dispose();
      model.dispose();
      port.close();
    }
  });
  post({ type: 'ready' });
}

main().catch((err: unknown) => post({ type: 'error', message: (err as Error).message }));
