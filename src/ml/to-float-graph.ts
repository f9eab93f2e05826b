// From a model to the FloatGraph IR (float-graph.ts): what the model computes in evaluation mode,
// float and batch norm on its running statistics, with BN folded into each conv (W * k, beta -
// runMean * k). Only float rounding differs from the tfjs forward pass, which applies k after the
// conv. Unlike toQuantGraph it needs no activation ranges, so it works before quantization starts.
import { graphLayers, type ConvSpec, type MobileNetV2 } from './mobilenet-v2.js';
import type { FloatConvNode, FloatGraph, FloatNode } from './float-graph.js';
import { convLayout, oihwOrder, readFoldedConv, readVariable, transposeDense } from './to-quant-graph.js';

function floatConv(m: MobileNetV2, c: ConvSpec, input: string): FloatConvNode {
  const { w, k, bias } = readFoldedConv(m, c);
  const order = oihwOrder(c);
  const perOut = order.length / c.outC;
  const weight = new Float32Array(order.length);
  for (let j = 0; j < order.length; j++) weight[j] = w[order[j]] * k[Math.floor(j / perOut)];
  return { op: 'conv', ...convLayout(c), output: c.name, input, weight, bias };
}

export function toFloatGraph(m: MobileNetV2): FloatGraph {
  const d = m.arch.dense;
  const nodes = graphLayers(m.arch).map((l): FloatNode => {
    switch (l.op) {
      case 'conv':
        return floatConv(m, l.conv, l.input);
      case 'add':
        return { op: 'add', name: l.name, output: l.output, inputs: l.inputs };
      case 'globalAvgPool':
        return { op: 'globalAvgPool', name: l.output, output: l.output, input: l.input };
      case 'dense':
        return {
          op: 'dense',
          name: d.name,
          output: l.output,
          input: l.input,
          inFeatures: d.inF,
          outFeatures: d.outF,
          weight: transposeDense(readVariable(m, `${d.name}/w`), d.inF, d.outF, new Float32Array(d.outF * d.inF)),
          bias: readVariable(m, `${d.name}/b`).slice(),
        };
    }
  });
  return { inputSize: m.arch.inputSize, numClasses: m.arch.numClasses, input: 'input', nodes, output: 'logits' };
}
