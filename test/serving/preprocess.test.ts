import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { decodedPixels, decodeForModel, decodeInspected, inspectImage, rgbToNchw } from '../../src/serving/preprocess.js';
import { scalableShape } from '../../src/data/image-decode.js';
import { preprocessImage } from './preprocess-image.js';
import { ImageError } from '../../src/serving/errors.js';
import { line, problemImages } from './bad-images.js';

const NORM = { mean: [0.485, 0.456, 0.406] as [number, number, number], std: [0.229, 0.224, 0.225] as [number, number, number] };

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    expect(err).toBeInstanceOf(ImageError);
    return (err as ImageError).code;
  }
}

describe('preprocessImage', () => {
  it('turns a solid colour into the normalized NCHW values worked out by hand', async () => {
    const red = await sharp({ create: { width: 50, height: 40, channels: 3, background: { r: 255, g: 0, b: 51 } } })
      .png()
      .toBuffer();
    const x = await preprocessImage(red, { size: 8, normalization: NORM });
    expect(x).toHaveLength(3 * 64);
    // (1 - 0.485) / 0.229 = 2.2489; (0 - 0.456) / 0.224 = -2.0357; (0.2 - 0.406) / 0.225 = -0.9156
    expect(x[0]).toBeCloseTo(2.2489, 3);
    expect(x[64 + 10]).toBeCloseTo(-2.0357, 3);
    expect(x[128 + 63]).toBeCloseTo(-0.9156, 3);
  });

  it('lays out channels as planes (NCHW)', () => {
    const rgb = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]); // 2x2
    const x = rgbToNchw(rgb, 2, { mean: [0, 0, 0], std: [1, 1, 1] });
    expect(Array.from(x)).toEqual([1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1]);
  });

  it('centre-crops after scaling the short side', async () => {
    // Left third black, middle white, right third black: a square centre crop is all white.
    const w = 90;
    const raw = Buffer.alloc(w * 30 * 3);
    for (let y = 0; y < 30; y++) for (let x = 30; x < 60; x++) raw.fill(255, (y * w + x) * 3, (y * w + x) * 3 + 3);
    const png = await sharp(raw, { raw: { width: w, height: 30, channels: 3 } })
      .png()
      .toBuffer();
    const x = await preprocessImage(png, { size: 10, normalization: { mean: [0, 0, 0], std: [1, 1, 1] } });
    // Squashing the whole width in (no crop) would leave black columns (~0); lanczos rings a little.
    expect(Math.min(...Array.from(x))).toBeGreaterThan(0.85);
  });

  it('converts grey, alpha, 16-bit and CMYK images instead of rejecting them', async () => {
    const imgs = await problemImages();
    for (const name of ['grey', 'alpha', 'sixteenBit', 'cmyk'] as const) {
      const x = await preprocessImage(imgs[name], { size: 16, normalization: NORM });
      expect(x, name).toHaveLength(3 * 256);
      expect(x.every(Number.isFinite), name).toBe(true);
    }
    // Grey stays grey: the three planes are equal.
    const g = await preprocessImage(imgs.grey, { size: 4, normalization: { mean: [0, 0, 0], std: [1, 1, 1] } });
    expect(g[0]).toBeCloseTo(90 / 255, 2);
    expect(g[16]).toBeCloseTo(g[0], 5);
  });

  it('rejects each kind of bad upload with its own code', async () => {
    const imgs = await problemImages();
    const opts = { size: 16, normalization: NORM };
    expect(await codeOf(preprocessImage(imgs.empty, opts))).toBe('IMAGE_EMPTY');
    expect(await codeOf(preprocessImage(imgs.notAnImage, opts))).toBe('IMAGE_UNSUPPORTED_FORMAT');
    expect(await codeOf(preprocessImage(imgs.svg, opts))).toBe('IMAGE_UNSUPPORTED_FORMAT');
    expect(await codeOf(preprocessImage(imgs.truncated, opts))).toBe('IMAGE_CORRUPT');
    expect(await codeOf(preprocessImage(imgs.animated, opts))).toBe('IMAGE_ANIMATED');
    expect(await codeOf(preprocessImage(imgs.huge, opts))).toBe('IMAGE_TOO_LARGE');
    expect(await codeOf(preprocessImage(imgs.sliver, opts))).toBe('IMAGE_SHAPE_UNSUPPORTED');
  });

  it('refuses as unscalable exactly the shapes libvips cannot scale to 224 px, which were answered IMAGE_CORRUPT', async () => {
    // The longest lines that still scale decode, at the largest input and so at every smaller one.
    for (const [length, width] of [
      [149_796, 1],
      [1_048_575, 7],
    ]) {
      const img = await line(length, width);
      expect((await inspectImage(img)).height).toBe(length);
      expect((await decodeForModel(img, { size: 224 })).length).toBe(224 * 224 * 3);
      expect(await codeOf(decodeInspected(await line(length + 1, width), 224))).toBe('IMAGE_CORRUPT'); // libvips' own refusal
      const refused = await inspectImage(await line(length + 1, width)).catch((e: ImageError) => e);
      expect(refused).toMatchObject({ code: 'IMAGE_SHAPE_UNSUPPORTED', statusCode: 400 });
      expect((refused as ImageError).message).toContain(`is ${width}x${length + 1}`);
    }
    expect(scalableShape(149_797, 1)).toBe(false); // lying down too
    expect(scalableShape(8064, 6048)).toBe(true);
  });

  it('counts a baseline JPEG at the scale libjpeg decodes it for a 224 px input, anything else whole', () => {
    const jpeg = (width: number, height: number, isProgressive = false) => decodedPixels({ format: 'jpeg', isProgressive, width, height });
    expect(jpeg(8064, 6048)).toBe(1008 * 756); // short side 27x the input: 1/8
    expect(jpeg(4032, 3024)).toBe(504 * 378);
    expect(jpeg(1400, 1000)).toBe(700 * 500); // 4.5x: 1/4 leaves too little, 1/2
    expect(jpeg(1000, 900)).toBe(500 * 450); // exactly 4x: one step less (libjpeg rounding)
    expect(jpeg(500, 375)).toBe(500 * 375); // under 2x: whole
    expect(jpeg(8064, 6048, true)).toBe(8064 * 6048);
    expect(decodedPixels({ format: 'png', width: 8064, height: 6048 })).toBe(8064 * 6048);
    expect(decodedPixels({ format: 'webp', width: 8064, height: 6048 })).toBe(8064 * 6048);
  });

  it('applies the pixel limit from the header', async () => {
    const img = await sharp({ create: { width: 200, height: 100, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    expect((await inspectImage(img, 20_000)).width).toBe(200);
    expect(await codeOf(inspectImage(img, 19_999))).toBe('IMAGE_TOO_LARGE');
  });
});
