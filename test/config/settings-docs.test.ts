// The README's settings table is generated from the settings schema; like openapi.yaml, the
// committed copy must be current (run `npm run docs:settings` after changing a setting).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SettingsSchema } from '../../src/config/settings.js';
import { README, settingsTable, withCurrentTable } from '../../scripts/settings-docs.js';

describe('README settings table', () => {
  it('is current with src/config/settings.ts (npm run docs:settings)', async () => {
    const readme = readFileSync(README, 'utf8');
    expect(readme === (await withCurrentTable(readme)), 'README.md settings table is stale: run `npm run docs:settings`').toBe(true);
  });

  it('has one row per setting, each with its meaning', async () => {
    const table = await settingsTable();
    for (const name of Object.keys(SettingsSchema.shape)) {
      const row = table.split('\n').find((line) => line.startsWith(`| \`${name}\``));
      expect(row, name).toBeDefined();
      expect(row!.split('|')[4].trim().length, `${name} has no description`).toBeGreaterThan(10);
    }
    for (const name of ['PREDICT_MAX_EXTRA_MODELS', 'QATSERVE_FUSED_OPS', 'QATSERVE_SKIP_MIGRATE', 'TFJS_BACKEND', 'MODEL_CACHE_MAX_MB']) {
      expect(table).toContain(`\`${name}\``);
    }
  });
});
