// A split described as plain data: what `loadDataset` found (file lists, sample counts, the
// fashion-mnist pixels in shared memory), without the closures that fetch images. The batch
// thread (batch-thread.ts) receives it through `workerData` and rebuilds the very same split, so
// both threads render identical batches. loadDataset builds its own splits through the same
// function, which keeps the two from drifting apart.
import type { ByteBudget } from './byte-cache.js';
import type { DataWarning } from './errors.js';
import { fashionGetter, fashionSplit } from './fashion-mnist.js';
import { folderGetter, type FolderStats } from './image-folder.js';
import { ImageSplit } from './split.js';
import { syntheticImages } from './synthetic.js';

export type SplitSource =
  | { type: 'synthetic'; seed: number; tag: number; classes: number; perClass: number; inputSize: number }
  /** `pixels`: one count x 784 array per class, in a SharedArrayBuffer so a thread reads them without a copy. */
  | { type: 'fashion-mnist'; pixels: Uint8Array[]; counts: number[]; firstIndex: number; inputSize: number }
  | { type: 'imagefolder'; files: string[]; labels: Int32Array; inputSize: number };

export function splitFromSource(src: SplitSource, budget: ByteBudget, warn: (w: DataWarning) => void, stats: FolderStats): ImageSplit {
  const size = src.inputSize;
  switch (src.type) {
    case 'synthetic': {
      const labels = Int32Array.from({ length: src.classes * src.perClass }, (_, i) => Math.floor(i / src.perClass));
      // No flips: classes are told apart by orientation, and a mirror image turns a 45-degree
      // grating into a 135-degree one, another class's (with flips, 4 classes topped out at 75%).
      const images = syntheticImages(src.seed, src.tag, src.perClass, labels.length, size, budget);
      return new ImageSplit(labels, size, images.get, false, src, images.defer);
    }
    case 'fashion-mnist': {
      const split = fashionSplit(src.pixels, src.counts, src.firstIndex);
      return new ImageSplit(split.labels, size, fashionGetter(split, size, budget), true, src);
    }
    case 'imagefolder':
      return new ImageSplit(src.labels, size, folderGetter({ files: src.files, labels: src.labels }, size, budget, warn, stats), true, src);
  }
}
