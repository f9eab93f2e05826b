// Real problem images, made with sharp (and one hand-patched PNG header), shared by the
// preprocessing unit tests and the HTTP tests against a running server.
import { readFile } from 'node:fs/promises';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { makeImage } from './fixtures.js';

/** A PNG whose IHDR claims width x height (CRC fixed), with the pixel data of a tiny image. */
export async function pngWithClaimedSize(width: number, height: number): Promise<Buffer> {
  const png = Buffer.from(await makeImage('png', 8, 8));
  // Signature (8) + length (4) + "IHDR" (4) -> width at 16, height at 20; CRC over type+data at 29.
  png.writeUInt32BE(width, 16);
  png.writeUInt32BE(height, 20);
  png.writeUInt32BE(zlib.crc32(png.subarray(12, 29)) >>> 0, 29);
  return png;
}

/** A baseline JPEG whose frame header claims `width` x `height` (its pixel data is 8x8's). */
export async function jpegWithClaimedSize(width: number, height: number): Promise<Buffer> {
  const jpeg = Buffer.from(await makeImage('jpeg', 8, 8));
  // SOF0 (FF C0): length (2), precision (1), then height and width.
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  jpeg.writeUInt16BE(height, sof + 5);
  jpeg.writeUInt16BE(width, sof + 7);
  return jpeg;
}

/** A real PNG `length` pixels long and one wide (grey). */
export async function line(length: number, width = 1): Promise<Buffer> {
  return sharp({ create: { width, height: length, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();
}

export async function problemImages() {
  const jpeg = await makeImage('jpeg', 96, 64);
  const rgba = Buffer.alloc(40 * 30 * 4);
  for (let i = 0; i < 40 * 30; i++) rgba.set([200, 30, 30, i % 2 ? 0 : 255], i * 4);
  const grey = Buffer.alloc(40 * 30, 90);
  const frame = (v: number) =>
    sharp({ create: { width: 20, height: 20, channels: 3, background: { r: v, g: 0, b: 0 } } })
      .png()
      .toBuffer();
  return {
    // Served (converted): what a user expects to work.
    grey: await sharp(grey, { raw: { width: 40, height: 30, channels: 1 } })
      .png()
      .toBuffer(),
    alpha: await sharp(rgba, { raw: { width: 40, height: 30, channels: 4 } })
      .png()
      .toBuffer(),
    sixteenBit: await sharp(await makeImage('png', 40, 30))
      .toColourspace('rgb16')
      .png()
      .toBuffer(),
    cmyk: await sharp(jpeg).toColourspace('cmyk').jpeg().toBuffer(),
    // Rejected, each with its own code.
    empty: Buffer.alloc(0),
    notAnImage: Buffer.from('this is a text file, not a picture\n'.repeat(20)),
    svg: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'),
    truncated: jpeg.subarray(0, Math.floor(jpeg.length / 2)),
    animated: await sharp([await frame(10), await frame(200)], { join: { animated: true } })
      .gif()
      .toBuffer(),
    huge: await pngWithClaimedSize(50_000, 50_000),
    // A real 1 x 150,000 line (a PNG of 150 KB): too long to scale its short side to 224 px.
    sliver: await line(150_000),
    // A real HEIC (64x48, made with libheif's heif-enc and x265): an iPhone's default format.
    heic: await readFile(new URL('./fixtures/iphone-photo.heic', import.meta.url)),
  };
}
