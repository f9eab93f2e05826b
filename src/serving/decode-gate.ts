// AVIF uploads decode one at a time. libheif decodes a whole frame at about 18 bytes a pixel: one
// 4096x4096 AVIF (2.9 MB) took 2.0 s and 301 MiB of RSS; four at once held 1.1 GB, filled the
// libuv pool sharp decodes on, and a 640x480 JPEG sent meanwhile waited 4.4 s instead of 9 ms
// (thirty-sixth session, a throwaway script). Serialised, AVIF costs its senders time, not the
// other formats' senders. A few may wait; past that the image is refused at once (503
// PREDICT_OVERLOADED), so AVIF cannot hold the predictor queue's places either.
import { OverloadedError } from './errors.js';

export class DecodeGate {
  private busy = false;
  private readonly waiting: Array<() => void> = [];

  constructor(
    /** What the decodes are, for the refusal's message. */
    private readonly what: string,
    /** Decodes that may wait while one runs. */
    private readonly maxWaiting: number,
  ) {}

  /** Runs `decode` when no other decode of this gate runs; throws OverloadedError when too many wait. */
  async run<T>(decode: () => Promise<T>): Promise<T> {
    if (this.busy) {
      if (this.waiting.length >= this.maxWaiting) {
        throw new OverloadedError(
          `${this.maxWaiting + 1} ${this.what} are being decoded or waiting already (one at a time); retry shortly, or send JPEG or PNG`,
        );
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.busy = true;
    try {
      return await decode();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.busy = false;
    }
  }
}
