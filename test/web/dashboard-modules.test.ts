// The dashboard's own modules that need no browser: its SSE frame parser (the page reads the
// event stream with fetch, so it parses frames itself), the run overlay's x-axis join, CSV, and
// the packing of picked files into predict requests.
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain browser JavaScript, no types
import { parseFrames } from '../../web/sse.js';
// @ts-expect-error plain browser JavaScript, no types
import { describeChart, joinRuns, toCsv } from '../../web/charts.js';
// @ts-expect-error plain browser JavaScript, no types
import { packBatches } from '../../web/batches.js';
import { sseFrame } from '../../src/api/routes/job-events.js';

describe('the dashboard SSE parser', () => {
  it('reads what the server writes, skips heartbeats, and keeps a partial frame for the next chunk', () => {
    const a = sseFrame({ id: 7, type: 'metric', data: JSON.stringify({ step: 1, loss: 1.5 }) });
    const b = sseFrame({ id: 8, type: 'status', data: JSON.stringify({ status: 'succeeded' }) });
    const text = `retry: 2000\n\n${a}: heartbeat\n\n${b}`;
    const cut = text.length - 10;
    const first = parseFrames(text.slice(0, cut));
    expect(first.events).toEqual([{ id: '7', type: 'metric', data: '{"step":1,"loss":1.5}' }]);
    const second = parseFrames(first.rest + text.slice(cut));
    expect(second.events).toEqual([{ id: '8', type: 'status', data: '{"status":"succeeded"}' }]);
    expect(second.rest).toBe('');
  });

  it('follows the spec: CRLF lines, multi-line data, no space after the colon, default type', () => {
    const { events } = parseFrames('id:3\r\ndata: a\r\ndata:b\r\n\r\n');
    expect(events).toEqual([{ id: '3', type: 'message', data: 'a\nb' }]);
  });
});

describe('the dashboard chart helpers', () => {
  it('joins runs on the union of their steps, null where a run has no point', () => {
    const runs = [
      {
        points: [
          { step: 1, loss: 2 },
          { step: 3, loss: 1 },
        ],
      },
      {
        points: [
          { step: 2, loss: 5 },
          { step: 3, loss: 4 },
          { step: 4, loss: null },
        ],
      },
    ];
    expect(joinRuns(runs, 'loss')).toEqual([
      [1, 2, 3],
      [2, null, 1],
      [null, 5, 4],
    ]);
  });

  it("says in words what a chart draws: the steps its axis spans and each series' last value", () => {
    const data = [
      [10, 20, 30],
      [0.5, 0.6, null],
      [0.4, null, null],
    ];
    expect(describeChart('top-1', data, ['float', 'int8'], 1, 1200)).toBe('top-1: steps 1 to 1,200, 3 points; last float 0.6 at step 20, int8 0.4 at step 10');
    expect(describeChart('loss', [[], []], ['loss'], 0, 9)).toBe('loss: steps 0 to 9, no points yet');
    expect(describeChart('loss', [[], []], ['loss'])).toBe('loss: no points yet');
  });

  it('writes metric points as CSV with empty cells for missing values', () => {
    const csv = toCsv([{ step: 1, epoch: 1, loss: 1.25, learningRate: 0.1, imagesPerSecond: 30, top1: null, top5: null, floatTop1: null, revision: 4 }]);
    expect(csv).toBe('step,epoch,loss,learningRate,imagesPerSecond,top1,top5,floatTop1,revision\r\n1,1,1.25,0.1,30,,,,4\r\n');
  });
});

describe('the dashboard predict batches', () => {
  const limits = { maxImagesPerRequest: 3, maxBytesPerRequest: 10 };

  it('fills each request up to the image count or the bytes together, in the order picked', () => {
    expect(packBatches([1, 1, 1, 1, 1, 1, 1], limits)).toEqual({ batches: [[0, 1, 2], [3, 4, 5], [6]], tooLarge: [] });
    expect(packBatches([4, 6, 4, 4, 3, 10], limits)).toEqual({ batches: [[0, 1], [2, 3], [4], [5]], tooLarge: [] });
  });

  it('sets aside a file over the byte limit alone, keeping the others in order', () => {
    expect(packBatches([11, 5, 12, 5, 1], limits)).toEqual({ batches: [[1, 3], [4]], tooLarge: [0, 2] });
    expect(packBatches([], limits)).toEqual({ batches: [], tooLarge: [] });
  });
});
