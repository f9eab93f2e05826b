// A batch before its pixel pass: each row's stored uint8 image and its augmentation draw, packed
// in one byte buffer that can be transferred between threads. ImageSplit.batch is fetch + render;
// a batch delivered as SourceRows leaves the render (renderSample, the bulk of a cached epoch's
// data work) to whoever trains on the rows: a split step's training threads each render their own
// rows, a few at a time, while they wait for each other inside the previous step
// (data-parallel/step-rows.ts), where the batch thread's copy of that work competed with the step
// for the cores. A synthetic image not rendered yet travels as its recipe (ImagePlace.deferred):
// the rank that trains on it renders it the same way, first, into the image's shared store, which
// serves every later epoch.
//
//   const rows = packSourceRows(images, augs);            // or ImageSplit.sources(...)
//   const mine = sliceSourceRows(rows, start, end);       // a copy to transfer to a thread
//   const r = new RowsRenderer(mine, inputSize, out);     // renders into out, n x size^2 x 3 floats
//   while (r.renderChunk()) {}                            // or r.finish()
import { sampleRows, type Augmentation, type RowRenderer, type SourceImage } from './augment.js';
import { SyntheticRows, type DeferredSynthetic } from './synthetic.js';

/**
 * Where row k's image sits in `bytes`; with `deferred`, a synthetic image whose pixels the row's
 * renderer makes first: in its shared store (which takes no room in `bytes`) or at `offset`.
 */
export interface ImagePlace {
  offset: number;
  side: number;
  channels: 1 | 3;
  deferred?: DeferredSynthetic;
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

/**
 * Packs `images` (with their augmentations) into `out`, or a new buffer of the exact size. A
 * deferred image is packed as its recipe, with room for its pixels unless it has a store.
 */
export function packSourceRows(images: Array<SourceImage | DeferredSynthetic>, augs: Augmentation[], out?: Uint8Array): SourceRows {
  const places = images.map((im): ImagePlace =>
    'data' in im ? { offset: 0, side: im.side, channels: im.channels } : { offset: 0, side: im.side, channels: 3, deferred: im },
  );
  const total = places.reduce((a, p) => a + imageBytes(p), 0);
  if (out && out.length < total) throw new RangeError(`source buffer holds ${out.length} bytes, need ${total}`);
  const bytes = out ?? new Uint8Array(total);
  let at = 0;
  images.forEach((im, k) => {
    places[k].offset = at;
    if ('data' in im) bytes.set(im.data, at);
    at += imageBytes(places[k]);
  });
  return { bytes, images: places, augs: augs.slice() };
}

/** Bytes of image `p`'s pixels. */
const pixelBytes = (p: ImagePlace) => p.side * p.side * p.channels;

/** Bytes image `p` takes in the rows' buffer (none when its pixels live in a shared store). */
const imageBytes = (p: ImagePlace) => (p.deferred?.store ? 0 : pixelBytes(p));

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

/** Row k's stored image, a view into the buffer or its shared store (a deferred one: see sourceRenderer). */
export function sourceImage(rows: SourceRows, k: number): SourceImage {
  const p = rows.images[k];
  const data = p.deferred?.store?.data ?? rows.bytes.subarray(p.offset, p.offset + pixelBytes(p));
  return { data, side: p.side, channels: p.channels };
}

/**
 * Rows of a deferred image rendered per renderChunk call: a 224 px image takes 14 calls, each a
 * fourteenth of renderSynthetic's time, so a chunk stays short as CHUNK_ROWS' do.
 */
const SOURCE_CHUNK_ROWS = 16;

/**
 * Renders row k's deferred image a chunk at a time: a function that renders the next chunk and
 * returns true while some remain. Null when the image has its pixels already.
 */
function sourceRenderer(rows: SourceRows, k: number): (() => boolean) | null {
  const p = rows.images[k];
  const d = p.deferred;
  if (!d) return null;
  const { store } = d;
  if (store && Atomics.load(store.flags, store.index) === 1) return null;
  const pixels = new SyntheticRows(d.recipe, d.side, sourceImage(rows, k).data);
  return () => {
    if (pixels.render(SOURCE_CHUNK_ROWS)) return true;
    // Rendered: let later epochs (and any other thread holding this image) use the stored bytes.
    if (store) Atomics.store(store.flags, store.index, 1);
    return false;
  };
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
  /** Row k's deferred image, while it is being rendered. */
  private source: (() => boolean) | null = null;

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
    if (!this.current) {
      this.source ??= sourceRenderer(this.rows, this.k);
      if (this.source?.()) return true;
      this.source = null;
      this.current = sampleRows(sourceImage(this.rows, this.k), s, this.rows.augs[this.k]);
    }
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
