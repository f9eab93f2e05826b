// Decoding an encoded image into the model's input: shared by training (imagefolder) and the
// server's /predict path, so a picture is seen the same way in both. The API imports this file
// directly; it depends on sharp only (no tfjs).
import sharp from 'sharp';

/**
 * Transparent pixels are composited onto white before the alpha channel is dropped: that is how
 * a browser shows a transparent PNG on a page, so it is what a user thinks the picture looks like.
 */
export const FLATTEN_BACKGROUND = { r: 255, g: 255, b: 255 } as const;

/** Raw pixels (row-major, interleaved channels), as a data set that is not stored as files holds them. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/**
 * sharp's names for the formats decoded here, for training and /v1/predict alike (AVIF reads as
 * `heif`; HEIC too, which undecodableReason then refuses).
 */
export const DECODED_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'avif']);

/** The largest model input (training's `model.inputSize` maximum): a shape that scales to it scales to any. */
export const LARGEST_INPUT = 224;

/**
 * libvips scales an image to no side of 2^25 pixels or more ("affine: output coordinates out of
 * range"), and the cover resize scales the short side to the input size: measured, with sharp's
 * libvips, a 1 x 149,796 image decodes at 224 px and 1 x 149,797 does not, 7 x 1,048,575 does and
 * 7 x 1,048,576 does not.
 */
const MAX_SCALED_SIDE = 2 ** 25;

/** Whether the cover resize to `size` px can scale this image at all (no photo comes near). */
export function scalableShape(width: number, height: number, size = LARGEST_INPUT): boolean {
  return Math.max(width, height) * size < MAX_SCALED_SIDE * Math.min(width, height);
}

/** What is wrong with a shape `scalableShape` refuses, in words. */
export function unscalableShape(width: number, height: number): string {
  const times = Math.round(Math.max(width, height) / Math.min(width, height));
  return `the image is ${width}x${height}: its long side is ${times} times its short side, too many to scale it to the model's input`;
}

/**
 * Why a picture whose header reads cannot be decoded by this build, or null. sharp's prebuilt
 * libvips reads HEIF containers but has no HEVC codec (patents), so an iPhone's HEIC photo passes
 * the header check and then fails as "bad seek": said here in words a user can act on.
 */
export function undecodableReason(meta: Pick<sharp.Metadata, 'format' | 'compression'>): string | null {
  if (meta.format === 'heif' && meta.compression === 'hevc') {
    return 'the image is HEIC (HEVC-coded, as iPhones save photos), which this server cannot decode; convert it to JPEG (on an iPhone: Settings > Camera > Formats > Most Compatible)';
  }
  return null;
}

/**
 * Decode JPEG/PNG/WebP (anything sharp reads) to `size` x `size` interleaved sRGB uint8 (HWC):
 * EXIF orientation applied, scaled so the short side is `size`, centre-cropped, alpha flattened,
 * grey/CMYK/16-bit converted to 8-bit sRGB. Rejects (throws) corrupt or truncated input.
 */
export async function decodeImageToRgb(input: Buffer | string, size: number): Promise<Uint8Array> {
  return toModelRgb(sharp(input, { failOn: 'error' }).rotate() /* honour EXIF orientation */, size);
}

/**
 * The same resize, crop and colour conversion for pixels already in memory (fashion-mnist), so a
 * data set's images reach training exactly as the same picture posted to /predict as a PNG does.
 */
export async function rawImageToRgb(img: RawImage, size: number): Promise<Uint8Array> {
  return toModelRgb(sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels } }), size);
}

async function toModelRgb(pipeline: sharp.Sharp, size: number): Promise<Uint8Array> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`decodeImageToRgb: bad size ${size}`);
  const { data, info } = await pipeline
    .flatten({ background: FLATTEN_BACKGROUND })
    .resize(size, size, { fit: 'cover', position: 'centre' })
    .toColourspace('srgb')
    .removeAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3 || data.length !== size * size * 3) {
    throw new Error(`decoder produced ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}
