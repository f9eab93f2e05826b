// What the server does to an upload, in one call for tests: the API decodes it (decodeForModel)
// and the inference worker normalizes it (rgbToNchw); here both run on this thread.
import { decodeForModel, rgbToNchw, type Normalization } from '../../src/serving/preprocess.js';

export interface PreprocessOptions {
  size: number;
  normalization: Normalization;
  maxPixels?: number;
}

/** Validates and decodes an upload into the model input [1, 3, size, size]. */
export async function preprocessImage(bytes: Buffer, opts: PreprocessOptions): Promise<Float32Array> {
  return rgbToNchw(await decodeForModel(bytes, opts), opts.size, opts.normalization);
}
