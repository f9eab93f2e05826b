// The weight storage a model file runs with on this CPU. An export on a CPU with VNNI (or ARM)
// keeps 8-bit weights as int8, exact there; on an x86 CPU without VNNI the same file saturates
// (ort-int8-cpu.ts), so a machine serving or evaluating it rewrites the file to uint8 storage
// first: every int8 weight + 128 with zero point 128, the values the export's own uint8 candidate
// holds, which ORT computes exactly on every CPU and still fuses.
import type { WeightEncoding } from './manifest.js';
import { DataType, decodeModel, encodeModel, type OnnxTensor } from './onnx-proto.js';
import { exactWeightEncoding } from './ort-int8-cpu.js';

/** What a manifest says about a file's weights (weightBits absent: written before 7-bit grids, so 8). */
export interface StoredWeights {
  weightEncoding: WeightEncoding;
  weightBits?: 7 | 8;
}

/** True when the file must be rewritten to uint8 storage before ORT runs it here. */
export function needsUint8Storage(stored: StoredWeights, saturating?: boolean): boolean {
  return stored.weightEncoding === 'int8' && exactWeightEncoding(stored.weightBits ?? 8, saturating) === 'uint8';
}

/**
 * The same QDQ model with every int8 weight (a DequantizeLinear input read from an initializer)
 * stored as uint8: values + 128, zero point 128 (added where the int8 file left the optional zero
 * point out). Activations are uint8 already and are left alone. A 1.0@224 file with 1,000 classes
 * (3.6 MB) takes 25-45 ms, once per load.
 */
export function toUint8WeightStorage(onnx: Uint8Array): Uint8Array {
  const model = decodeModel(onnx);
  const g = model.graph;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const names = new Set([...inits.keys(), ...g.node.flatMap((n) => [...n.input, ...n.output])]);
  const converted = new Set<string>();
  const toUint8 = (t: OnnxTensor) => {
    if (converted.has(t.name)) return;
    converted.add(t.name);
    // Two's complement int8 v as a byte, xor 0x80, is the byte of v + 128.
    const from = rawBytes(t);
    const to = new Uint8Array(from.length);
    for (let i = 0; i < from.length; i++) to[i] = from[i] ^ 0x80;
    t.rawData = to;
    t.dataType = DataType.UINT8;
  };
  for (const node of g.node) {
    if (node.opType !== 'DequantizeLinear') continue;
    const weight = inits.get(node.input[0]);
    if (!weight || weight.dataType !== DataType.INT8) continue;
    toUint8(weight);
    const zp = node.input[2] ? inits.get(node.input[2]) : undefined;
    if (zp) {
      if (zp.dataType !== DataType.INT8) throw new Error(`weight ${weight.name}: zero point ${zp.name} is not int8`);
      toUint8(zp);
      continue;
    }
    const scale = inits.get(node.input[1]);
    if (!scale) throw new Error(`weight ${weight.name}: its scale is not an initializer`);
    let name = `${weight.name}_zp`;
    while (names.has(name)) name += '_';
    names.add(name);
    const count = scale.dims.reduce((a, d) => a * Number(d), 1);
    const added: OnnxTensor = { name, dataType: DataType.UINT8, dims: scale.dims.map(Number), rawData: new Uint8Array(count).fill(128) };
    g.initializer.push(added);
    inits.set(name, added);
    node.input = [node.input[0], node.input[1], name];
  }
  return encodeModel(model);
}

/** An initializer's bytes (the exporter writes raw_data; an empty one reads back as absent). */
function rawBytes(t: OnnxTensor): Uint8Array {
  return t.rawData ?? new Uint8Array(0);
}
