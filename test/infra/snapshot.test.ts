import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { PophookStack } from '../../infra/pophook-stack.js';
import { parseConfig } from '../../shared/config/load.js';

/** Asset hashes (and the S3 keys built from them) change with every byte of handler code. */
function normalise(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(/[A-Fa-f0-9]{64}/g, '[ASSET HASH]');
  if (Array.isArray(value)) return value.map(normalise);
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
  return value;
}

const config = parseConfig({
  version: 1,
  mailboxes: [
    {
      id: 'support',
      host: 'pop.example.com',
      user: 'support@example.com',
      auth: { type: 'password', password: { secret: 'pophook/support-password' } },
    },
  ],
  endpoints: [
    {
      id: 'helpdesk',
      url: 'https://hooks.example.com/in',
      secrets: [{ secret: 'pophook/helpdesk-signing' }],
    },
  ],
  aws: { alarmEmail: 'ops@example.com' },
});

describe('PophookStack snapshot', () => {
  it('snapshot: one mailbox, one endpoint, alarm email', () => {
    const app = new App({
      context: { 'aws:cdk:bundling-stacks': [] },
      builtinCloudFormationValidation: false,
    });
    const stack = new PophookStack(app, 'Pophook', { config });
    const template = normalise(Template.fromStack(stack).toJSON());
    expect(JSON.stringify(template)).not.toMatch(/[A-Fa-f0-9]{64}/);
    expect(template).toMatchSnapshot();
  });
});
