// The input normalization shared by training, the ONNX manifest and /predict. Changing these
// numbers silently breaks every exported model, so they live in exactly one place.

/** ImageNet channel statistics, applied to RGB scaled to [0, 1]: x = (v / 255 - mean) / std. */
export const NORMALIZATION = Object.freeze({
  mean: [0.485, 0.456, 0.406] as [number, number, number],
  std: [0.229, 0.224, 0.225] as [number, number, number],
});

/** Channel order of every image array in this layer (NHWC, interleaved RGB). */
export const CHANNELS = 3;

/**
 * Lookup table: normalized value of byte v in channel c is LUT[c * 256 + v]. 768 floats computed
 * once make normalization a table lookup instead of a divide per pixel.
 */
export const NORMALIZE_LUT: Float32Array = (() => {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - NORMALIZATION.mean[c]) / NORMALIZATION.std[c];
  }
  return lut;
})();
