// The JSON body rules: what a route can take passes unchanged, what only costs the event loop is
// refused before JSON.parse, and a refusal says why.
import { describe, expect, it } from 'vitest';
import { jsonShapeProblem, parseJsonBody } from '../../src/api/json-body.js';
import { ServiceError } from '../../src/jobs/job-errors.js';

function refusal(text: string, contentType?: string): { code: string; message: string } {
  try {
    parseJsonBody(text, contentType);
  } catch (err) {
    if (err instanceof ServiceError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('parsed');
}

describe('JSON bodies', () => {
  it('parses configs, keys and base64 images as JSON.parse does', () => {
    const bodies = [
      { dataset: { type: 'synthetic', classes: 4 }, model: { widthMultiplier: 1, inputSize: 224 }, training: { learningRate: null } },
      { name: 'ops', scopes: ['train', 'predict'] },
      { image: Buffer.alloc(300_000, 7).toString('base64') },
      // Brackets, braces, commas and escaped quotes inside strings are not structure.
      { name: 'a [{ "b": [1, 2] }] \\" \\\\', nested: [[[]], {}, [{ k: '"],}' }]] },
      Array.from({ length: 9_000 }, (_, i) => i),
    ];
    for (const body of bodies) expect(parseJsonBody(JSON.stringify(body))).toEqual(body);
    expect(parseJsonBody('  {"a" : "\\\\"}  ')).toEqual({ a: '\\' });
  });

  it('refuses deep or many-valued bodies with JSON_TOO_COMPLEX, naming the limit', () => {
    expect(refusal('['.repeat(500_000) + ']'.repeat(500_000))).toEqual({ code: 'JSON_TOO_COMPLEX', message: 'the JSON body nests deeper than 32 levels' });
    expect(refusal('{"a":'.repeat(40) + '1' + '}'.repeat(40)).code).toBe('JSON_TOO_COMPLEX');
    expect(refusal(`[${'[],'.repeat(20_000)}[]]`)).toEqual({ code: 'JSON_TOO_COMPLEX', message: 'the JSON body holds more than 10000 values' });
    expect(refusal(`{"image": [${'1,'.repeat(10_000)}1]}`).code).toBe('JSON_TOO_COMPLEX');
    // 32 levels is allowed; an unclosed string hides what follows, which JSON.parse then refuses.
    expect(jsonShapeProblem('['.repeat(32) + ']'.repeat(32))).toBeNull();
    expect(jsonShapeProblem('"' + '['.repeat(100))).toBeNull();
    expect(refusal('"' + '['.repeat(100)).code).toBe('INVALID_JSON');
  });

  it('says where JSON is broken, and that a __proto__ key is refused', () => {
    const broken = refusal('{"dataset": {"type": synthetic}}');
    expect(broken.code).toBe('INVALID_JSON');
    expect(broken.message).toMatch(/^JSON body: Unexpected token 's'.*synthetic/);
    expect(refusal('{"__proto__": {"admin": true}, "dataset": {}}')).toEqual({
      code: 'INVALID_JSON',
      message: 'JSON body: a "__proto__" or "constructor.prototype" key is not accepted',
    });
    expect(refusal('{"constructor": {"prototype": {"x": 1}}}').code).toBe('INVALID_JSON');
  });

  it('takes UTF-8 (declared or not) and refuses another declared charset with 415', () => {
    for (const type of [
      undefined,
      'application/json',
      'application/json; charset=utf-8',
      'application/json;charset="UTF-8"',
      'application/json; charset=utf8',
      'application/json; charset=US-ASCII',
    ]) {
      expect(parseJsonBody('{"name": "ü"}', type)).toEqual({ name: 'ü' });
    }
    expect(refusal('{}', 'application/json; charset=utf-16')).toEqual({
      code: 'UNSUPPORTED_MEDIA_TYPE',
      message: 'JSON bodies are UTF-8; the content type declares charset "utf-16"',
    });
  });
});
