// The JSON manifest written beside every exported model.onnx. It is the whole contract between the
// exporter and the server: how to turn a picture into the model's input, what the outputs mean, and
// what the export measured. Plain data, no tfjs, so the API can import it.
import type { ActQuant } from '../ml/quant-graph.js';
import type { FusionReport } from './fusion-check.js';

export const MANIFEST_FORMAT = 'qatserve-model';
export const MANIFEST_VERSION = 1;

export interface ModelManifest {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  jobId: string;
  createdAt: string;
  /** File name of the model, beside the manifest. */
  file: string;
  sha256: string;
  sizeBytes: number;
  /** Size of the same network written as fp32 ONNX (not kept on disk). */
  float32SizeBytes: number;
  classes: string[];
  input: {
    name: string;
    /** [N, 3, size, size], N dynamic. */
    layout: 'NCHW';
    dtype: 'float32';
    size: number;
  };
  output: { name: string; dtype: 'float32'; meaning: 'logits' };
  /**
   * How /predict (and training) turn an image into the input: EXIF rotation applied, alpha
   * composited on `background`, short side scaled to `size`, centre crop, sRGB 8-bit, then
   * (v / 255 - mean) / std per channel.
   */
  preprocess: {
    resize: 'short-side-then-center-crop';
    colorSpace: 'srgb';
    alphaBackground: { r: number; g: number; b: number };
    normalization: { mean: [number, number, number]; std: [number, number, number] };
  };
  quantization: {
    format: 'onnx-qdq';
    opset: number;
    activationType: 'uint8 asymmetric per-tensor';
    weightType: 'int8 symmetric per-channel';
    /** 'uint8' stores the same int8 values + 128 (zero point 128); see onnx-qdq.ts. */
    weightEncoding: 'int8' | 'uint8';
    /** Weight grid: 7 bits ([-63, 63]) or 8 ([-127, 127]); absent in manifests written before it existed (8). */
    weightBits?: 7 | 8;
    input: ActQuant;
    logits: ActQuant;
    convs: number;
    adds: number;
    /** Per activation tensor: scale and zero point, in graph order. */
    activations: Array<{ tensor: string; scale: number; zeroPoint: number }>;
    fusion: FusionReport;
  };
  accuracy: {
    /** Validation images the figures below were measured on. */
    images: number;
    floatTop1: number;
    int8Top1: number;
    /** Share of images where ORT's int8 top-1 equals the tfjs fake-quant model's top-1. */
    agreement: number;
    /** Largest |ORT - tfjs fake-quant| logit difference, in logit quantization steps. */
    maxLogitDiffSteps: number;
    /** Largest |ORT - plain-JS integer reference of the int8 graph| on a few images (null: skipped). */
    maxStepsVsIntegerReference?: number | null;
  };
  /**
   * The shipped int8 file (run by ONNX Runtime) on the whole validation split. Absent in manifests
   * written before it existed.
   */
  evaluation?: ModelEvaluation;
  /** Problems found at export that do not stop the model from serving, e.g. MODEL_AT_CHANCE. */
  warnings?: Array<{ code: string; message: string }>;
  checkpoint: { step: number };
}

export interface ModelEvaluation {
  images: number;
  top1: number;
  top5: number;
  /** Per class, in `classes` order: share of its images predicted as it (null: no images). */
  perClassTop1: Array<number | null>;
  /** confusion[true class][predicted class]: image counts. */
  confusion: number[][];
}
