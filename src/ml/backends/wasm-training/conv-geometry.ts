// Convolution geometry shared by the gradient kernels: NHWC only, dilation 1.
import { backend_util } from '@tensorflow/tfjs-core';
import { WasmTrainingError } from './errors.js';

export interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kH: number;
  kW: number;
  strideH: number;
  strideW: number;
  padTop: number;
  padLeft: number;
  /** Depthwise channel multiplier (1 for a regular conv). */
  mult: number;
}

type Pad = 'valid' | 'same' | number | backend_util.ExplicitPadding;

function assertDilationOne(dilations: number | [number, number] | undefined, op: string): void {
  if (dilations == null) return;
  const [dh, dw] = typeof dilations === 'number' ? [dilations, dilations] : dilations;
  if (dh !== 1 || dw !== 1) {
    throw new WasmTrainingError('WASM_TRAINING_UNSUPPORTED', `${op} on wasm: dilation ${dh}x${dw} is not supported (only 1).`);
  }
}

export function convGeometry(
  op: string,
  xShape: number[],
  filterShape: number[],
  strides: number | [number, number],
  pad: Pad,
  dimRoundingMode: 'floor' | 'round' | 'ceil' | undefined,
  depthwise: boolean,
  dilations?: number | [number, number],
  dataFormat?: string,
): ConvGeometry {
  if (dataFormat != null && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new WasmTrainingError('WASM_TRAINING_UNSUPPORTED', `${op} on wasm: only NHWC is supported, got ${dataFormat}.`);
  }
  assertDilationOne(dilations, op);
  if (xShape.length !== 4 || filterShape.length !== 4) {
    throw new WasmTrainingError('WASM_TRAINING_BAD_INPUT', `${op} on wasm: expected rank-4 input and filter.`);
  }
  const info = backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    depthwise,
    'channelsLast',
  );
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    kH: info.filterHeight,
    kW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
    mult: depthwise ? filterShape[3] : 1,
  };
}

/** 1x1, stride 1, no padding: the convolution is a plain matrix product over positions. */
export function isPointwise(g: ConvGeometry): boolean {
  return g.kH === 1 && g.kW === 1 && g.strideH === 1 && g.strideW === 1 && g.padTop === 0 && g.padLeft === 0 && g.outH === g.inH && g.outW === g.inW;
}
