// What onnxruntime makes of a model: it saves its optimized graph (optimizedModelFilePath) and we
// count the node types. A fully fused int8 MobileNetV2 has one QLinearConv per conv, QLinearAdd for
// the residual adds, QLinearGlobalAveragePool and QGemm, and no float Conv left.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { decodeModel } from './onnx-proto.js';
import type { FusionReport } from './manifest.js';

export type OpCounts = Record<string, number>;

export function countOps(modelBytes: Uint8Array): OpCounts {
  const counts: OpCounts = {};
  for (const node of decodeModel(modelBytes).graph.node ?? []) counts[node.opType] = (counts[node.opType] ?? 0) + 1;
  return counts;
}

/**
 * Op counts of the graph ORT runs after all its optimizations (CPU, one thread). ORT hands the graph
 * over only as a file, written in a directory made under `tmpDir`: a worker passes its job's
 * scratch, as a container with a read-only root filesystem has no writable /tmp.
 */
export async function optimizedOpCounts(modelBytes: Uint8Array, tmpDir: string = tmpdir()): Promise<OpCounts> {
  const dir = await mkdtemp(path.join(tmpDir, 'qatserve-fusion-'));
  const file = path.join(dir, 'optimized.onnx');
  try {
    const session = await ort.InferenceSession.create(modelBytes, {
      graphOptimizationLevel: 'all',
      optimizedModelFilePath: file,
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      // ORT warns that an 'all'-level optimized file is hardware specific; we only inspect it.
      logSeverityLevel: 3,
    });
    await session.release();
    return countOps(await readFile(file));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The report's shape is part of the manifest (src/export/manifest.ts). */
export type { FusionReport };

export function fusionReport(ops: OpCounts, expected: { convs: number; adds: number; pools: number; denses: number }): FusionReport {
  const report = {
    convs: expected.convs,
    qlinearConvs: ops['QLinearConv'] ?? 0,
    floatConvs: (ops['Conv'] ?? 0) + (ops['FusedConv'] ?? 0),
    qlinearAdds: ops['QLinearAdd'] ?? 0,
    adds: expected.adds,
    qlinearGlobalAvgPools: ops['QLinearGlobalAveragePool'] ?? 0,
    qgemms: ops['QGemm'] ?? 0,
  };
  return {
    ...report,
    fullyFused:
      report.qlinearConvs === expected.convs &&
      report.floatConvs === 0 &&
      report.qlinearAdds === expected.adds &&
      report.qlinearGlobalAvgPools === expected.pools &&
      report.qgemms === expected.denses,
  };
}

/** What a fully fused QuantGraph should turn into. */
export function expectedKernels(graph: { nodes: Array<{ op: string }> }): { convs: number; adds: number; pools: number; denses: number } {
  const count = (op: string): number => graph.nodes.filter((n) => n.op === op).length;
  return { convs: count('conv'), adds: count('add'), pools: count('globalAvgPool'), denses: count('dense') };
}
