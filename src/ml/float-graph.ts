// The float network as plain data, the int8 QuantGraph's twin without quantization: batch norm
// folded into the convolutions with the running statistics, as the model evaluates. src/export
// writes it as a float ONNX file, which ONNX Runtime scores evaluations with (TrainOptions
// .floatScorer). Layouts as in quant-graph.ts: OIHW conv weights, [out, in] dense weights.
import type { AddNode, ConvNode, DenseNode, GlobalAvgPoolNode, QuantGraph, QuantNode } from './quant-graph.js';

type Unquantized<N> = Omit<N, 'outQuant' | 'weightInt8' | 'weightScale'>;

export type FloatConvNode = Unquantized<ConvNode> & {
  /** OIHW, BN folded: W * k per output channel. */
  weight: Float32Array;
};
export type FloatDenseNode = Unquantized<DenseNode> & {
  /** [out, in]. */
  weight: Float32Array;
};
export type FloatNode = FloatConvNode | Unquantized<AddNode> | Unquantized<GlobalAvgPoolNode> | FloatDenseNode;

export interface FloatGraph {
  inputSize: number;
  numClasses: number;
  /** Input tensor name; shape [N, 3, inputSize, inputSize], normalized as QuantGraph's. */
  input: string;
  /** Topologically ordered. */
  nodes: FloatNode[];
  /** The logits tensor. */
  output: string;
}

/** Weights dequantized per output channel (q * scale[channel]), as a float32 array. */
function dequantize(q: Int8Array, scale: Float32Array): Float32Array {
  const out = new Float32Array(q.length);
  const per = q.length / scale.length;
  for (let i = 0; i < q.length; i++) out[i] = q[i] * scale[Math.floor(i / per)];
  return out;
}

function dequantizeNode(node: QuantNode): FloatNode {
  switch (node.op) {
    case 'conv':
    case 'dense': {
      const { outQuant: _q, weightInt8, weightScale, ...rest } = node;
      return { ...rest, weight: dequantize(weightInt8, weightScale) };
    }
    default: {
      const { outQuant: _q, ...rest } = node;
      return rest;
    }
  }
}

/** The int8 graph's network in float: weights dequantized, activations left unquantized. */
export function dequantizeGraph(g: QuantGraph): FloatGraph {
  return { inputSize: g.inputSize, numClasses: g.numClasses, input: g.input.name, nodes: g.nodes.map(dequantizeNode), output: g.output };
}
