import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { buildConfigJsonSchema, renderConfigJsonSchema } from '../../../shared/config/json-schema.js';

describe('config JSON Schema', () => {
  it('docs/config.schema.json is up to date (regenerate: npx tsx scripts/gen-schemas.ts)', async () => {
    const committed = await readFile(new URL('../../../docs/config.schema.json', import.meta.url), 'utf8');
    expect(committed).toBe(renderConfigJsonSchema());
  });

  it('describes the input shape: required fields only where there is no default', () => {
    const schema = buildConfigJsonSchema() as {
      required: string[];
      properties: { mailboxes: { items: { required: string[]; additionalProperties: boolean } } };
    };
    expect(schema.required.sort()).toEqual(['mailboxes', 'version']);
    expect(schema.properties.mailboxes.items.required.sort()).toEqual(['auth', 'host', 'id', 'user']);
    expect(schema.properties.mailboxes.items.additionalProperties).toBe(false);
  });
});
