// QuantGraph -> ONNX QDQ: the int8 model shaped so onnxruntime fuses every conv into QLinearConv,
// every residual add into QLinearAdd, the pool into QLinearGlobalAveragePool and the classifier into
// QGemm (docs: DESIGN.md "Serving: int8 ONNX on onnxruntime-node"). That needs Q/DQ on every
// activation (input, ReLU6 outputs, projections, adds, pool, logits), uint8 activations, int8
// per-channel weight initializers behind DequantizeLinear(axis 0) and int32 biases behind
// DequantizeLinear with scale = inputScale * weightScale[c]. The float network is onnx-float.ts's.
import { biasScales, quantizeBias, weightQmax, type ActQuant, type ConvNode, type DenseNode, type QuantGraph } from '../ml/quant-graph.js';
import { convAttributes, encodeGraph, endsInLogits, GraphBuilder, int, type OnnxWriteOptions as BaseWriteOptions } from './onnx-builder.js';
import { DataType } from './onnx-proto.js';

export { ONNX_OPSET } from './onnx-builder.js';

export interface OnnxWriteOptions extends BaseWriteOptions {
  /**
   * How the int8 weights are stored. 'int8' (default) is the textbook form. 'uint8' stores q + 128
   * with zero point 128: the same values, but ORT then runs u8u8 kernels, which on x86 CPUs
   * without VNNI avoid the int16 saturation of the u8s8 path (vpmaddubsw).
   */
  weightEncoding?: 'int8' | 'uint8';
}

/**
 * Q(Clip(x, 0, 6)) == Q(x) when the quantized range [s * (0 - zp), s * (255 - zp)] lies inside
 * [0, 6]: with zp 0 and 255 * s <= 6, QuantizeLinear's own saturation to [0, 255] is the clip.
 * Trained ReLU6 ranges are built that way (fake-quant.ts actQParams). ORT drops such a Clip anyway
 * (ClipQuantFusion); leaving it out of the file saves a node and two tensor names per conv.
 */
export function clipIsRedundant(q: ActQuant): boolean {
  return q.zeroPoint === 0 && Math.fround(Math.fround(q.scale) * 255) <= 6;
}

/** OIHW weights with a 4th, all-zero input channel (for the padded graph input). */
function padInputChannel(node: ConvNode): Int8Array {
  const [kh, kw] = node.kernel;
  const k = kh * kw;
  const out = new Int8Array(node.outChannels * 4 * k);
  for (let o = 0; o < node.outChannels; o++) out.set(node.weightInt8.subarray(o * 3 * k, (o + 1) * 3 * k), o * 4 * k);
  return out;
}

/** Weights on the declared grid: |w| <= 63 for 7-bit graphs (what makes int8 storage exact). */
function assertWeightGrid(graph: QuantGraph): void {
  const qmax = weightQmax(graph.weightBits ?? 8);
  for (const node of graph.nodes) {
    if (node.op !== 'conv' && node.op !== 'dense') continue;
    for (const v of node.weightInt8) {
      if (v > qmax || v < -qmax) {
        throw new RangeError(`${node.name}: weight ${v} outside the ${graph.weightBits ?? 8}-bit grid [-${qmax}, ${qmax}]`);
      }
    }
  }
}

export function quantGraphToQdqOnnx(graph: QuantGraph, options: OnnxWriteOptions = {}): Uint8Array {
  assertWeightGrid(graph);
  const b = new GraphBuilder();
  // IR tensor name -> name of the float tensor that consumers read (its DequantizeLinear's output).
  const floatName = new Map<string, string>();
  const quantOf = new Map<string, ActQuant>();

  /** Q -> DQ on `source` (float), producing float tensor `target`; returns the uint8 tensor name. */
  const qdq = (tensor: string, source: string, target: string, quant: ActQuant): string => {
    const scale = b.scalarF32(`${tensor}/act_scale`, quant.scale);
    const zp = b.init(`${tensor}/act_zero_point`, DataType.UINT8, [], new Uint8Array([quant.zeroPoint]));
    const q = `${tensor}/quantized`;
    b.node('QuantizeLinear', `${tensor}/QuantizeLinear`, [source, scale, zp], [q]);
    b.node('DequantizeLinear', `${tensor}/DequantizeLinear`, [q, scale, zp], [target]);
    return q;
  };

  const inputName = graph.input.name;
  quantOf.set(inputName, graph.input.quant);
  // The 3-channel input is padded to 4 channels (uint8, with the zero point: real 0) and the
  // first conv's weights get a zero 4th input channel: the same result, but ORT's QLinearConv
  // ran the 3x3/2 stem at 224 in 183 us with 4 input channels against 382 us with 3.
  const inputReaders = graph.nodes.filter((n) => (n.op === 'add' ? n.inputs.includes(inputName) : n.input === inputName));
  const padInput = inputReaders.length > 0 && inputReaders.every((n) => n.op === 'conv' && n.group === 1 && n.inChannels === 3);
  const dq = `${inputName}/dequantized`;
  if (padInput) {
    const scale = b.scalarF32(`${inputName}/act_scale`, graph.input.quant.scale);
    const zp = b.init(`${inputName}/act_zero_point`, DataType.UINT8, [], new Uint8Array([graph.input.quant.zeroPoint]));
    const q = `${inputName}/quantized`;
    const padded = `${inputName}/quantized_4ch`;
    const pads = b.init(`${inputName}/channel_pads`, DataType.INT64, [8], BigInt64Array.from([0, 0, 0, 0, 0, 1, 0, 0].map(BigInt)));
    b.node('QuantizeLinear', `${inputName}/QuantizeLinear`, [inputName, scale, zp], [q]);
    b.node('Pad', `${inputName}/Pad`, [q, pads, zp], [padded]);
    b.node('DequantizeLinear', `${inputName}/DequantizeLinear`, [padded, scale, zp], [dq]);
  } else {
    qdq(inputName, inputName, dq, graph.input.quant);
  }
  floatName.set(inputName, dq);

  const read = (tensor: string): string => {
    const name = floatName.get(tensor);
    if (!name) throw new Error(`QuantGraph reads tensor '${tensor}' before it is written`);
    return name;
  };

  /** Weight and bias inputs for a conv or dense node: DQ'd int8 (or uint8) weights and int32 biases. */
  const params = (node: ConvNode | DenseNode, dims: number[], weightInt8 = node.weightInt8): [string, string] => {
    const outCh = dims[0];
    const unsigned = options.weightEncoding === 'uint8';
    const wq = unsigned
      ? b.init(
          `${node.name}/weight_quantized`,
          DataType.UINT8,
          dims,
          Uint8Array.from(weightInt8, (v) => v + 128),
        )
      : b.init(`${node.name}/weight_quantized`, DataType.INT8, dims, weightInt8);
    const ws = b.init(`${node.name}/weight_scale`, DataType.FLOAT, [outCh], Float32Array.from(node.weightScale));
    // int8 weights are symmetric: DequantizeLinear's zero point is optional and 0 by default (of
    // the int8 input's type), so convs leave it out (1 byte per channel) and ORT 1.30 still fuses
    // them into QLinearConv. Its Gemm fusion does not: without the zero point the classifier stays
    // DQ -> Gemm -> Q in float, so dense layers keep theirs (measured, test/export/onnx-qdq.test.ts).
    const wIn = unsigned
      ? [wq, ws, b.init(`${node.name}/weight_zero_point`, DataType.UINT8, [outCh], new Uint8Array(outCh).fill(128))]
      : node.op === 'dense'
        ? [wq, ws, b.init(`${node.name}/weight_zero_point`, DataType.INT8, [outCh], new Int8Array(outCh))]
        : [wq, ws];
    const w = `${node.name}/weight`;
    b.node('DequantizeLinear', `${node.name}/weight/DequantizeLinear`, wIn, [w], [int('axis', 0)]);

    const inQuant = quantOf.get(node.input);
    if (!inQuant) throw new Error(`no quantization for tensor '${node.input}'`);
    const bScale = biasScales(inQuant.scale, node.weightScale);
    const bq = b.init(`${node.name}/bias_quantized`, DataType.INT32, [outCh], quantizeBias(node.bias, bScale));
    // The bias scale is inputScale x weightScale by definition, so it is written as that product
    // of the two tensors already in the file instead of a third per-channel tensor (4 bytes per
    // channel: 28 KB, 1.7% of the fp32 size, for the width-0.35 model). ORT's constant folding
    // turns it back into an initializer before the QDQ fusions run, with the same float32
    // product `biasScales` computes.
    const bs = `${node.name}/bias_scale`;
    b.node('Mul', `${node.name}/bias_scale/Mul`, [`${node.input}/act_scale`, ws], [bs]);
    // The zero point is optional and 0 by default; leaving it out saves 4 bytes per channel.
    const bias = `${node.name}/bias`;
    b.node('DequantizeLinear', `${node.name}/bias/DequantizeLinear`, [bq, bs], [bias], [int('axis', 0)]);
    return [w, bias];
  };

  /** Routes a node's float result through Q/DQ to its IR tensor name. */
  const finish = (tensor: string, source: string, quant: ActQuant): void => {
    quantOf.set(tensor, quant);
    qdq(tensor, source, tensor, quant);
    floatName.set(tensor, tensor);
  };

  for (const node of graph.nodes) {
    switch (node.op) {
      case 'conv': {
        const dims = [node.outChannels, node.inChannels / node.group, node.kernel[0], node.kernel[1]];
        const [w, bias] = padInput && node.input === inputName ? params(node, [dims[0], 4, dims[2], dims[3]], padInputChannel(node)) : params(node, dims);
        const convOut = `${node.output}/conv`;
        b.node('Conv', `${node.name}/Conv`, [read(node.input), w, bias], [convOut], convAttributes(node));
        let result = convOut;
        if (node.activation === 'relu6' && !clipIsRedundant(node.outQuant)) {
          // Clip(0, 6) with constant bounds. Only written where the following QuantizeLinear does
          // not already clamp to [0, 6] (see clipIsRedundant): ranges reaching outside [0, 6],
          // where the Clip changes the result.
          result = `${node.output}/relu6`;
          const lo = b.scalarF32('relu6/min', 0);
          const hi = b.scalarF32('relu6/max', 6);
          b.node('Clip', `${node.name}/Relu6`, [convOut, lo, hi], [result]);
        }
        finish(node.output, result, node.outQuant);
        break;
      }
      case 'add': {
        const sum = `${node.output}/add`;
        b.node('Add', `${node.name}/Add`, [read(node.inputs[0]), read(node.inputs[1])], [sum]);
        finish(node.output, sum, node.outQuant);
        break;
      }
      case 'globalAvgPool': {
        const pooled = `${node.output}/pool`;
        b.node('GlobalAveragePool', `${node.name}/GlobalAveragePool`, [read(node.input)], [pooled]);
        quantOf.set(node.output, node.outQuant);
        // Flatten the uint8 tensor between Q and DQ, so the pool stays DQ->GAP->Q and the
        // classifier DQ->Gemm->Q for the fusions.
        const scale = b.scalarF32(`${node.output}/act_scale`, node.outQuant.scale);
        const zp = b.init(`${node.output}/act_zero_point`, DataType.UINT8, [], new Uint8Array([node.outQuant.zeroPoint]));
        const q = `${node.output}/quantized`;
        const flat = `${node.output}/quantized_flat`;
        b.node('QuantizeLinear', `${node.output}/QuantizeLinear`, [pooled, scale, zp], [q]);
        b.node('Flatten', `${node.name}/Flatten`, [q], [flat], [int('axis', 1)]);
        b.node('DequantizeLinear', `${node.output}/DequantizeLinear`, [flat, scale, zp], [node.output]);
        floatName.set(node.output, node.output);
        break;
      }
      case 'dense': {
        const [w, bias] = params(node, [node.outFeatures, node.inFeatures]);
        const out = `${node.output}/gemm`;
        b.node('Gemm', `${node.name}/Gemm`, [read(node.input), w, bias], [out], [int('transB', 1)]);
        finish(node.output, out, node.outQuant);
        break;
      }
      default: {
        const never: never = node;
        throw new Error(`unknown QuantGraph node ${(never as { op: string }).op}`);
      }
    }
  }

  // The graph output must carry the IR output name.
  const last = read(graph.output);
  if (last !== graph.output) b.node('Identity', `${graph.output}/Identity`, [last], [graph.output]);

  return encodeGraph(
    b,
    {
      name: 'qatserve_int8',
      docString: 'MobileNetV2 QAT, int8 QDQ (uint8 activations, int8 per-channel weights)',
      input: inputName,
      output: graph.output,
      inputSize: graph.inputSize,
      numClasses: graph.numClasses,
      logitsOutput: endsInLogits(graph.nodes, graph.output),
    },
    options,
  );
}
