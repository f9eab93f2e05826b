// What both ONNX writers (onnx-qdq.ts, onnx-float.ts) share: a graph under construction, the
// compact tensor names, and the model around a finished graph.
import { AttributeType, DataType, encodeModel, type OnnxAttribute, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from './onnx-proto.js';

export const ONNX_OPSET = 13;
const IR_VERSION = 8;

export interface OnnxWriteOptions {
  /** Free-form key/value pairs stored in ModelProto.metadata_props (e.g. jobId). */
  metadata?: Record<string, string>;
  producerVersion?: string;
  /**
   * 'short' (default): tensors get base-36 names and nodes none, except the graph's input and
   * output. Descriptive names ('block3/expand/weight_quantized') were 53 KB of a 560 KB width-0.35
   * model, 10% of the file. 'descriptive' keeps them, for reading the graph and for profiling.
   */
  names?: 'short' | 'descriptive';
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  // ONNX raw_data is little-endian; every platform ORT ships for is little-endian too.
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private readonly initNames = new Set<string>();

  node(opType: string, name: string, input: string[], output: string[], attribute: OnnxAttribute[] = []): void {
    this.nodes.push({ name, opType, input, output, attribute });
  }

  init(name: string, dataType: number, dims: number[], data: ArrayBufferView): string {
    if (!this.initNames.has(name)) {
      this.initNames.add(name);
      this.initializers.push({ name, dataType, dims, rawData: bytesOf(data) });
    }
    return name;
  }

  scalarF32(name: string, value: number): string {
    return this.init(name, DataType.FLOAT, [], new Float32Array([value]));
  }
}

export const ints = (name: string, values: number[]): OnnxAttribute => ({ name, type: AttributeType.INTS, ints: values });
export const int = (name: string, value: number): OnnxAttribute => ({ name, type: AttributeType.INT, i: value });

/** A Conv node's attributes, from the geometry both graph IRs state the same way. */
export function convAttributes(node: { kernel: number[]; strides: number[]; pads: number[]; group: number }): OnnxAttribute[] {
  return [ints('kernel_shape', node.kernel), ints('strides', node.strides), ints('pads', node.pads), ints('dilations', [1, 1]), int('group', node.group)];
}

/** Renames every tensor but the graph's input and output to a base-36 counter and drops node names. */
function compactNames(nodes: OnnxNode[], initializers: OnnxTensor[], keep: Set<string>): void {
  const names = new Map<string, string>();
  const short = (name: string): string => {
    if (name === '' || keep.has(name)) return name;
    let s = names.get(name);
    if (s === undefined) {
      s = names.size.toString(36);
      // A counter value that happens to equal a kept name would alias it.
      while (keep.has(s)) s = `_${s}`;
      names.set(name, s);
    }
    return s;
  };
  for (const t of initializers) t.name = short(t.name);
  for (const n of nodes) {
    n.name = '';
    n.input = n.input.map(short);
    n.output = n.output.map(short);
  }
}

/** The model around a finished graph: input [N, 3, size, size] float, output the logits. */
export function encodeGraph(
  b: GraphBuilder,
  g: { name: string; docString: string; input: string; output: string; inputSize: number; numClasses: number; logitsOutput: boolean },
  options: OnnxWriteOptions,
): Uint8Array {
  if ((options.names ?? 'short') === 'short') compactNames(b.nodes, b.initializers, new Set([g.input, g.output]));
  const size = g.inputSize;
  const input: OnnxValueInfo = {
    name: g.input,
    type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }, { dimValue: 3 }, { dimValue: size }, { dimValue: size }] } } },
  };
  // Logits are [N, classes]; a graph cut short (tests probing an inner tensor) leaves the shape open.
  const output = {
    name: g.output,
    type: {
      tensorType: g.logitsOutput ? { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }, { dimValue: g.numClasses }] } } : { elemType: DataType.FLOAT },
    },
  } as OnnxValueInfo;
  return encodeModel({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'qatserve',
    producerVersion: options.producerVersion ?? '0.1.0',
    docString: g.docString,
    graph: { name: g.name, node: b.nodes, initializer: b.initializers, input: [input], output: [output] },
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
}

/** Whether the graph ends in its classifier (a graph cut short for a test does not). */
export function endsInLogits(nodes: ReadonlyArray<{ op: string; output: string }>, output: string): boolean {
  const last = nodes.at(-1);
  return last?.op === 'dense' && last.output === output;
}
