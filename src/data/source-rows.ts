// A batch before its pixel pass: each row's stored uint8 image and its augmentation draw, packed
// in one byte buffer that can be transferred between threads. ImageSplit.batch is fetch + render;
// a batch delivered as SourceRows leaves the render (renderSample, the bulk of a cached epoch's
// data work) to whoever trains on the rows: a split step's training threads each render their own
// rows, a few at a time, while they wait for each other inside the previous step
// (data-parallel/step-rows.ts), where the batch thread's copy of that work competed with the step
// for the cores.
//
//   const rows = packSourceRows(images, augs);            // or ImageSplit.sources(...)
//   const mine = sliceSourceRows(rows, start, end);       // a copy to transfer to a thread
//   const r = new RowsRenderer(mine, inputSize, out);     // renders into out, n x size^2 x 3 floats
//   while (r.renderChunk()) {}                            // or r.finish()
import { sampleRows, type Augmentation, type RowRenderer, type SourceImage } from './augment.js';

/** Where row k's image sits in `bytes`. */
export interface ImagePlace {
  offset: number;
  side: number;
  channels: 1 | 3;
}

export interface SourceRows {
  /** The rows' images, one after another (ImagePlace says where). */
  bytes: Uint8Array;
  images: ImagePlace[];
  augs: Augmentation[];
}

/** Bytes a row's stored image can take at this input size (Fashion-MNIST's 28 px grey included). */
export function maxImageBytes(inputSize: number): number {
  return Math.max(inputSize, 28) ** 2 * 3;
}

/** Packs `images` (with their augmentations) into `out`, or a new buffer of the exact size. */
export function packSourceRows(images: SourceImage[], augs: Augmentation[], out?: Uint8Array): SourceRows {
  const total = images.reduce((a, im) => a + im.data.length, 0);
  if (out && out.length < total) throw new RangeError(`source buffer holds ${out.length} bytes, need ${total}`);
  const bytes = out ?? new Uint8Array(total);
  const places: ImagePlace[] = [];
  let at = 0;
  for (const im of images) {
    bytes.set(im.data, at);
    places.push({ offset: at, side: im.side, channels: im.channels });
    at += im.data.length;
  }
  return { bytes, images: places, augs: augs.slice() };
}

const imageBytes = (p: ImagePlace) => p.side * p.side * p.channels;

/** Rows [start, end) as a copy of their own (their bytes can be transferred). */
export function sliceSourceRows(rows: SourceRows, start: number, end: number): SourceRows {
  const places = rows.images.slice(start, end);
  if (places.length === 0) return { bytes: new Uint8Array(0), images: [], augs: [] };
  const from = places[0].offset;
  const last = places[places.length - 1];
  return {
    bytes: rows.bytes.slice(from, last.offset + imageBytes(last)),
    images: places.map((p) => ({ ...p, offset: p.offset - from })),
    augs: rows.augs.slice(start, end),
  };
}

/** Row k's stored image, a view into the buffer. */
export function sourceImage(rows: SourceRows, k: number): SourceImage {
  const p = rows.images[k];
  return { data: rows.bytes.subarray(p.offset, p.offset + imageBytes(p)), side: p.side, channels: p.channels };
}

/**
 * Output rows rendered per chunk: 16 rows of a 224 px sample take ~40 us, short enough that a
 * rank busy with a chunk when the last peer reaches the barrier holds the step back by little.
 */
export const CHUNK_ROWS = 16;

/** Renders rows [start, end) of `rows` into `out` (row start + k at k x size^2 x 3), a chunk at a time. */
export class RowsRenderer {
  private k: number;
  private y = 0;
  private current: RowRenderer | null = null;

  constructor(
    readonly rows: SourceRows,
    private readonly size: number,
    readonly out: Float32Array,
    private readonly start = 0,
    private readonly end = rows.images.length,
  ) {
    if (start < 0 || end > rows.images.length || start > end) throw new RangeError(`rows [${start}, ${end}) outside a batch of ${rows.images.length}`);
    if (out.length < (end - start) * size * size * 3) throw new RangeError(`render buffer holds ${out.length} floats, too few for ${end - start} rows`);
    this.k = start;
  }

  get done(): boolean {
    return this.k >= this.end;
  }

  /** Renders the next CHUNK_ROWS output rows; false once every row is rendered. */
  renderChunk(): boolean {
    if (this.done) return false;
    const s = this.size;
    this.current ??= sampleRows(sourceImage(this.rows, this.k), s, this.rows.augs[this.k]);
    const y1 = Math.min(s, this.y + CHUNK_ROWS);
    this.current(this.y, y1, this.out, (this.k - this.start) * s * s * 3);
    this.y = y1;
    if (this.y === s) {
      this.k++;
      this.y = 0;
      this.current = null;
    }
    return !this.done;
  }

  /** Renders whatever is left; returns the rendered rows ((end - start) x size^2 x 3 floats). */
  finish(): Float32Array {
    while (this.renderChunk());
    return this.out.subarray(0, (this.end - this.start) * this.size * this.size * 3);
  }
}
