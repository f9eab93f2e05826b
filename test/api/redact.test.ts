// The net under every 4xx/5xx body: paths, connection strings and stack frames are replaced, the
// API's own routes and ordinary words are not, JSON stays JSON, and adversarial inputs take linear
// time (this scan runs on bodies that may echo client input).
import { describe, expect, it } from 'vitest';
import { redact, redactBody } from '../../src/redact.js';

describe('redact', () => {
  it.each([
    ['model file /home/u/data/artifacts/m/model.onnx unreadable', 'model file <path> unreadable'],
    ['the server\'s data root "/tmp/qatserve-x/datasets" does not exist', 'the server\'s data root "<path>" does not exist'],
    ['connect to postgresql://user:pw@db:5432/test?schema=x failed', 'connect to <redacted> failed'],
    ['DATABASE_URL file:./data/qatserve.db is bad', 'DATABASE_URL <redacted> is bad'],
    ['see https://bob:secret@example.com/x', 'see https://<redacted>@example.com/x'],
    ['Error: x\n    at foo (/a/b.js:1:2)\n    at bar (/a/c.js:3:4)', 'Error: x'],
    ['C:\\Users\\bob\\x.onnx missing', '<path> missing'],
  ])('%s', (input, out) => {
    expect(redact(input)).toBe(out);
  });

  it("leaves the API's routes, single-segment paths and plain words alone", () => {
    for (const s of ['no route GET /v1/jobs/abc/metrics', 'no route GET /foo', 'width 0.35 at 32 px: 1/2 of the budget', 'a/b relative path']) {
      expect(redact(s)).toBe(s);
    }
  });

  it('keeps a JSON body valid, redacting inside its strings', () => {
    const body = JSON.stringify({
      error: { code: 'X', message: 'absolute path "/etc/passwd" and "C:\\\\x\\\\y"', issues: [{ path: 'dataset.path', message: 'postgres://u:p@h/db' }] },
    });
    const out = JSON.parse(redactBody(body));
    expect(out).toEqual({ error: { code: 'X', message: 'absolute path "<path>" and "<path>"', issues: [{ path: 'dataset.path', message: '<redacted>' }] } });
  });

  it('takes linear time on adversarial input (1 MB each well under 200 ms)', () => {
    const n = 500_000;
    for (const s of [
      'a.'.repeat(n),
      '\n'.repeat(2 * n),
      '\n '.repeat(n),
      '://'.repeat(n),
      'file:'.repeat(n),
      ' /a'.repeat(n),
      '=/a='.repeat(n),
      ' /'.repeat(n),
      'C:\\'.repeat(n),
    ]) {
      const t0 = performance.now();
      redact(s);
      expect(performance.now() - t0, JSON.stringify(s.slice(0, 6))).toBeLessThan(200);
    }
  });
});
