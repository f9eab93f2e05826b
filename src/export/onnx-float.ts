// FloatGraph -> ONNX float32: Conv (+ Clip for ReLU6), Add, GlobalAveragePool + Flatten, Gemm.
// Two uses: scoring a training run's float evaluations on ONNX Runtime (onnx-scorer.ts), and the
// float32 size the export reports beside the int8 file's (`quantGraphToFloatOnnx`: the int8
// graph's network with its weights dequantized, the same as the QDQ file without Q/DQ).
import { dequantizeGraph, type FloatConvNode, type FloatDenseNode, type FloatGraph } from '../ml/float-graph.js';
import type { QuantGraph } from '../ml/quant-graph.js';
import { convAttributes, encodeGraph, endsInLogits, GraphBuilder, int, type OnnxWriteOptions } from './onnx-builder.js';
import { DataType } from './onnx-proto.js';

export function floatGraphToOnnx(graph: FloatGraph, options: OnnxWriteOptions = {}): Uint8Array {
  const b = new GraphBuilder();
  const params = (node: FloatConvNode | FloatDenseNode, dims: number[]): [string, string] => [
    b.init(`${node.name}/weight`, DataType.FLOAT, dims, node.weight),
    b.init(`${node.name}/bias`, DataType.FLOAT, [dims[0]], node.bias),
  ];
  // IR tensor name -> the ONNX tensor holding it (a ReLU6's Clip output, a Gemm's, ...).
  const tensors = new Map<string, string>([[graph.input, graph.input]]);
  const read = (tensor: string): string => {
    const name = tensors.get(tensor);
    if (!name) throw new Error(`FloatGraph reads tensor '${tensor}' before it is written`);
    return name;
  };
  for (const node of graph.nodes) {
    switch (node.op) {
      case 'conv': {
        const [w, bias] = params(node, [node.outChannels, node.inChannels / node.group, node.kernel[0], node.kernel[1]]);
        let out = `${node.output}/conv`;
        b.node('Conv', `${node.name}/Conv`, [read(node.input), w, bias], [out], convAttributes(node));
        if (node.activation === 'relu6') {
          const clipped = `${node.output}/relu6`;
          b.node('Clip', `${node.name}/Relu6`, [out, b.scalarF32('relu6/min', 0), b.scalarF32('relu6/max', 6)], [clipped]);
          out = clipped;
        }
        tensors.set(node.output, out);
        break;
      }
      case 'add': {
        const sum = `${node.output}/add`;
        b.node('Add', `${node.name}/Add`, [read(node.inputs[0]), read(node.inputs[1])], [sum]);
        tensors.set(node.output, sum);
        break;
      }
      case 'globalAvgPool': {
        const pooled = `${node.output}/pool`;
        const flat = `${node.output}/flat`;
        b.node('GlobalAveragePool', `${node.name}/GlobalAveragePool`, [read(node.input)], [pooled]);
        b.node('Flatten', `${node.name}/Flatten`, [pooled], [flat], [int('axis', 1)]);
        tensors.set(node.output, flat);
        break;
      }
      case 'dense': {
        const [w, bias] = params(node, [node.outFeatures, node.inFeatures]);
        const out = `${node.output}/gemm`;
        b.node('Gemm', `${node.name}/Gemm`, [read(node.input), w, bias], [out], [int('transB', 1)]);
        tensors.set(node.output, out);
        break;
      }
      default: {
        const never: never = node;
        throw new Error(`unknown FloatGraph node ${(never as { op: string }).op}`);
      }
    }
  }
  // The graph output must carry the IR output name.
  b.node('Identity', `${graph.output}/Identity`, [read(graph.output)], [graph.output]);
  return encodeGraph(
    b,
    {
      name: 'qatserve_fp32',
      docString: 'MobileNetV2, float32',
      input: graph.input,
      output: graph.output,
      inputSize: graph.inputSize,
      numClasses: graph.numClasses,
      logitsOutput: endsInLogits(graph.nodes, graph.output),
    },
    options,
  );
}

/** The int8 graph's network in float32 (weights dequantized, no Q/DQ): the export's size baseline. */
export function quantGraphToFloatOnnx(graph: QuantGraph, options: OnnxWriteOptions = {}): Uint8Array {
  return floatGraphToOnnx(dequantizeGraph(graph), options);
}
