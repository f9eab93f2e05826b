// The input normalization shared by training, the ONNX manifest and /predict. Changing these
// numbers silently breaks every exported model, so they live in exactly one place.

/** ImageNet channel statistics, applied to RGB scaled to [0, 1]: x = (v / 255 - mean) / std. */
export const NORMALIZATION = Object.freeze({
  mean: [0.485, 0.456, 0.406] as [number, number, number],
  std: [0.229, 0.224, 0.225] as [number, number, number],
});

/** Channel order of every image array in this layer (NHWC, interleaved RGB). */
export const CHANNELS = 3;

/** Per-channel statistics of an input normalization (a model manifest may carry its own). */
export interface Normalization {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

// One table per normalization, built once: the serving path asks for one per request.
const lutCache = new Map<string, Float32Array>();

/**
 * Lookup table: normalized value of byte v in channel c is LUT[c * 256 + v]. 768 floats computed
 * once make normalization a table lookup instead of a divide per pixel.
 */
export function normalizationLut(norm: Normalization): Float32Array {
  const key = `${norm.mean.join(',')}/${norm.std.join(',')}`;
  let lut = lutCache.get(key);
  if (!lut) {
    lut = new Float32Array(3 * 256);
    for (let c = 0; c < 3; c++) {
      for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - norm.mean[c]) / norm.std[c];
    }
    if (lutCache.size > 64) lutCache.clear();
    lutCache.set(key, lut);
  }
  return lut;
}

/** The table of NORMALIZATION, which training and the exported models use. */
export const NORMALIZE_LUT: Float32Array = normalizationLut(NORMALIZATION);
