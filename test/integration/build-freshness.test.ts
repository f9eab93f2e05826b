// assertBuilt's check: the integration tests run dist/, so a source newer than its build must stop them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { staleBuildFiles } from './worker-process.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-stale-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function file(rel: string, mtimeSec: number): void {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, '');
  fs.utimesSync(p, mtimeSec, mtimeSec);
}

describe('staleBuildFiles', () => {
  it('names sources that are newer than their build or were never built, and nothing else', () => {
    file('src/fresh.ts', 1000);
    file('dist/fresh.js', 2000);
    file('src/deep/edited.ts', 3000);
    file('dist/deep/edited.js', 2000);
    file('src/new.ts', 1000);
    file('src/types.d.ts', 5000);
    file('src/README.md', 5000);
    expect(staleBuildFiles(path.join(root, 'src'), path.join(root, 'dist'))).toEqual([path.join('deep', 'edited.ts'), 'new.ts']);
  });

  it('finds nothing stale in this checkout right after `npm run build`', () => {
    expect(staleBuildFiles(path.resolve('src'), path.resolve('dist'))).toEqual([]);
  });
});
