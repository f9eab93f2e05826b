// One rank's input rows of each split step, rendered by the rank itself from source rows (each
// row's stored image and augmentation, src/data/source-rows.ts): the current step's at its start
// when they were not prepared, the next step's a chunk at a time while the rank waits at the
// current step's barriers (SharedCollective.setIdleWork). Two buffers alternate, so the rows being
// rendered never overwrite the ones the step in progress made its input tensor from (the cpu
// backend keeps a reference to them instead of a copy).
import { RowsRenderer, type SourceRows } from '../../data/index.js';
import type { SharedCollective } from './shared-collective.js';

/** Rows [start, end) of a batch's source rows. */
export interface RowRange {
  rows: SourceRows;
  start: number;
  end: number;
}

export class StepRows {
  private readonly buffers: [Float32Array, Float32Array] = [new Float32Array(0), new Float32Array(0)];
  private last = 1;
  /** The next step's rows, being rendered in this step's waits. */
  private ahead: RowsRenderer | null = null;

  constructor(private readonly size: number) {}

  /**
   * This step's input: `now` rendered at once, or (now null) the rows prepare() started during the
   * previous step, finished.
   */
  take(now: RowRange | null): Float32Array {
    const ahead = this.ahead;
    this.ahead = null;
    if (now) return this.renderer(now).finish();
    if (!ahead) throw new Error('no rows were prepared for this step');
    return ahead.finish();
  }

  /** Starts rendering the next step's rows into the other buffer, in `coll`'s barrier waits. */
  prepare(next: RowRange, coll: SharedCollective): void {
    const r = this.renderer(next);
    this.ahead = r;
    coll.setIdleWork(() => r.renderChunk());
  }

  /** Forgets prepared rows (the next step brings its own). */
  drop(): void {
    this.ahead = null;
  }

  private renderer(r: RowRange): RowsRenderer {
    this.last ^= 1;
    const need = (r.end - r.start) * this.size * this.size * 3;
    if (this.buffers[this.last].length < need) this.buffers[this.last] = new Float32Array(need);
    return new RowsRenderer(r.rows, this.size, this.buffers[this.last], r.start, r.end);
  }
}
