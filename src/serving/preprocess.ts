// Bytes -> model input, following the model's manifest, with every kind of bad upload turned into
// a clear ImageError. Decoding itself is the data layer's decodeImageToRgb, so a picture is seen by
// /predict exactly as training saw it: EXIF rotation, alpha composited on white, short side scaled
// to the input size, centre crop, 8-bit sRGB.
//
// What we accept and what a user gets:
// - JPEG, PNG, WebP, GIF (one frame), TIFF, AVIF: decoded. HEIC (HEVC) has no codec in this build:
//   415 IMAGE_UNSUPPORTED_FORMAT saying so (undecodableReason), not a "corrupt" image.
// - Grey, grey+alpha, CMYK, 16-bit, palette, alpha: converted to 8-bit sRGB and served (a phone
//   photo in CMYK or a 16-bit PNG is still a picture the user expects a label for).
// - Empty body: 400 IMAGE_EMPTY. Not an image / SVG / PDF / anything else: 415
//   IMAGE_UNSUPPORTED_FORMAT. Animated (several frames): 400 IMAGE_ANIMATED. An image whose decode
//   would hold more pixels than the limit: 400 IMAGE_TOO_LARGE (checked from the header, before
//   decoding; see decodedPixels: a 48 MP camera's JPEG decodes at 1/8 scale). An image whose
//   short side scaled to the input would make the long side too long for libvips (a 1 x 150,000
//   line): 400 IMAGE_SHAPE_UNSUPPORTED (scalableShape; training skips such a file). Truncated or
//   corrupt pixel data: 400 IMAGE_CORRUPT. A declared content type (raw body, multipart part,
//   data: URL) that is not the format the bytes are: 415 IMAGE_TYPE_MISMATCH, since a client that
//   mislabels its uploads would otherwise learn nothing of it (and filters keyed on the declared
//   type are bypassed). `application/octet-stream` or no type declares nothing.
import sharp from 'sharp';
import { DECODED_FORMATS, decodeImageToRgb, LARGEST_INPUT, scalableShape, unscalableShape, undecodableReason } from '../data/image-decode.js';
import { normalizationLut, type Normalization } from '../data/normalization.js';
import { ImageError } from './errors.js';

/**
 * Pixels a decode may hold (the PREDICT_MAX_IMAGE_PIXELS default): a 4096x4096 image decoded whole,
 * and the baseline JPEG of any camera, which decodes at up to 1/8 scale (decodedPixels).
 */
export const DEFAULT_MAX_PIXELS = 4096 * 4096;

/**
 * The largest image libvips decodes at all, in header pixels (sharp's default `limitInputPixels`,
 * 0x3FFF squared): above it the decode fails, which must read as too large, not as corrupt.
 */
export const MAX_HEADER_PIXELS = 0x3fff * 0x3fff;

/**
 * The pixels libvips holds to make a `size` px model input (cover, centre crop) from an image of
 * this header. A baseline JPEG, as cameras and phones write them, decodes at 1/2, 1/4 or 1/8 scale
 * where the model input is that much smaller (libjpeg's DCT scaling as sharp's pipeline.cc picks
 * it: one step less when the shrink is that factor exactly). Everything else is held whole: a
 * progressive JPEG keeps every coefficient of the full image, lossless WebP and AVIF decode whole
 * frames. Measured (thirty-sixth session, one decode each, RSS growth): 48.8 MP baseline JPEG
 * (14.8 MB) 178 ms, 2 MiB; the same progressive 1.2 s, 142 MiB; lossless WebP 1.6 s, 188 MiB;
 * 12 MP AVIF 1.5 s, 217 MiB.
 */
export function decodedPixels(meta: { format?: string; isProgressive?: boolean; width: number; height: number }, size = LARGEST_INPUT): number {
  const { width: w, height: h } = meta;
  if (meta.format !== 'jpeg' || meta.isProgressive) return w * h;
  const shrink = Math.min(w, h) / size;
  let f = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
  if (f > 1 && Math.trunc(shrink) === f) f /= 2;
  return Math.ceil(w / f) * Math.ceil(h / f);
}

/** A client's declared media type, e.g. `image/png` (parameters already stripped). */
export type DeclaredFormat = string;

/** sharp's format name for each image media type a client may declare. */
const FORMAT_OF_MEDIA_TYPE: Record<string, string> = {
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/pjpeg': 'jpeg',
  'image/png': 'png',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'image/tiff': 'tiff',
  'image/avif': 'heif',
  'image/heif': 'heif',
  'image/heic': 'heif',
};

/** Media types a raw /v1/predict body may carry: the image types above, and a type that declares nothing. */
export const RAW_IMAGE_MEDIA_TYPES = [...Object.keys(FORMAT_OF_MEDIA_TYPE), 'application/octet-stream'];

/** True when the declared type says nothing (absent, octet-stream) or names the decoded format. */
export function declaredTypeMatches(declared: DeclaredFormat | undefined, format: string): boolean {
  const t = (declared ?? '').trim().toLowerCase();
  if (t === '' || t === 'application/octet-stream') return true;
  return FORMAT_OF_MEDIA_TYPE[t] === format;
}

export type { Normalization } from '../data/normalization.js';

/** Checks the header: format, frame count, dimensions. Throws ImageError. */
export async function inspectImage(bytes: Buffer, maxPixels = DEFAULT_MAX_PIXELS, declared?: DeclaredFormat): Promise<sharp.Metadata> {
  if (bytes.length === 0) throw new ImageError('IMAGE_EMPTY', 'the image is empty (0 bytes)');
  let meta: sharp.Metadata;
  try {
    // limitInputPixels false here: we want the dimensions even of a huge image, to say so.
    meta = await sharp(bytes, { limitInputPixels: false, pages: -1 }).metadata();
  } catch {
    throw new ImageError('IMAGE_UNSUPPORTED_FORMAT', 'the upload is not an image in a supported format (JPEG, PNG, WebP, GIF, TIFF, AVIF)');
  }
  if (!meta.format || !DECODED_FORMATS.has(meta.format)) {
    throw new ImageError(
      'IMAGE_UNSUPPORTED_FORMAT',
      `images of format "${meta.format ?? 'unknown'}" are not accepted; send JPEG, PNG, WebP, GIF, TIFF or AVIF`,
    );
  }
  const undecodable = undecodableReason(meta);
  if (undecodable) throw new ImageError('IMAGE_UNSUPPORTED_FORMAT', undecodable);
  if (!declaredTypeMatches(declared, meta.format)) {
    throw new ImageError(
      'IMAGE_TYPE_MISMATCH',
      `the content type says "${declared}" but the image is ${meta.format.toUpperCase()}; send it as image/${meta.format === 'heif' ? 'avif' : meta.format}`,
    );
  }
  if ((meta.pages ?? 1) > 1) {
    throw new ImageError('IMAGE_ANIMATED', `the image has ${meta.pages} frames; send a single still image`);
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w < 1 || h < 1) throw new ImageError('IMAGE_CORRUPT', 'the image has no pixels');
  if (w * h > MAX_HEADER_PIXELS) {
    throw new ImageError('IMAGE_TOO_LARGE', `the image is ${w}x${h} (${w * h} pixels); no image over ${MAX_HEADER_PIXELS} pixels is decoded`);
  }
  if (!scalableShape(w, h)) throw new ImageError('IMAGE_SHAPE_UNSUPPORTED', `${unscalableShape(w, h)}; crop it first`);
  const decoded = decodedPixels({ format: meta.format, isProgressive: meta.isProgressive, width: w, height: h });
  if (decoded > maxPixels) {
    const held = decoded === w * h ? '' : `, ${decoded} of them decoded`;
    throw new ImageError('IMAGE_TOO_LARGE', `the image is ${w}x${h} (${w * h} pixels${held}); the limit is ${maxPixels} pixels decoded`);
  }
  return meta;
}

/** Interleaved RGB bytes (HWC) -> normalized float NCHW, written at `offset` of `out`. */
export function rgbToNchw(rgb: Uint8Array, size: number, norm: Normalization, out = new Float32Array(3 * size * size), offset = 0): Float32Array {
  const plane = size * size;
  const lut = normalizationLut(norm);
  for (let p = 0, q = 0; p < plane; p++, q += 3) {
    out[offset + p] = lut[rgb[q]]!;
    out[offset + plane + p] = lut[256 + rgb[q + 1]]!;
    out[offset + 2 * plane + p] = lut[512 + rgb[q + 2]]!;
  }
  return out;
}

/**
 * Validates and decodes an upload into the model's `size` x `size` interleaved 8-bit RGB (HWC).
 * The serving path hands these bytes to the inference worker, which normalizes them off the
 * event loop (and a quarter of the float input's size crosses the thread boundary).
 */
export async function decodeForModel(bytes: Buffer, opts: { size: number; maxPixels?: number; declared?: DeclaredFormat }): Promise<Uint8Array> {
  await inspectImage(bytes, opts.maxPixels, opts.declared);
  return decodeInspected(bytes, opts.size);
}

/** The decode of `decodeForModel`, for bytes whose header `inspectImage` has passed. */
export async function decodeInspected(bytes: Buffer, size: number): Promise<Uint8Array> {
  try {
    return await decodeImageToRgb(bytes, size);
  } catch (err) {
    throw new ImageError('IMAGE_CORRUPT', `the image could not be decoded (truncated or corrupt): ${(err as Error).message.split('\n')[0]}`);
  }
}
