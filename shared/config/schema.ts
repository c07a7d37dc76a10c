/**
 * The one configuration file, shared by local mode, the Lambda functions and the CDK app. Parsed once,
 * at the boundary, with this schema; nothing else interprets raw config. Secrets are references
 * (`{ secret: "name" }`), never values: they resolve through Secrets Manager in AWS and a local secrets
 * file or the environment locally.
 *
 * Written with `zod/mini` (the same core, checks and messages as classic zod, without the method
 * chains): both Lambda bundles parse this at start-up, and classic zod's `z` namespace drags its ~40
 * locales and JSON Schema converters into the bundle (about 440 KiB minified of a 1.5 MB budget).
 * Each schema below is built exactly as classic zod builds its chain (`z.number().int().min(1)` is
 * `z.number().check(z.int(), z.gte(1))`), so parse results, issues and the JSON Schema are unchanged.
 */

import * as z from 'zod/mini';
import '../zod.js';

/** A reference to a secret: a Secrets Manager name or ARN, or a key in the local secrets file. */
export const SecretRef = z.strictObject({
  secret: z.string().check(z.minLength(1)).register(z.globalRegistry, {
    description: 'Secrets Manager name or ARN (AWS), or key in the local secrets file',
  }),
  /** When the secret is a JSON object, the field to read. */
  field: z.optional(z.string().check(z.minLength(1))),
});
export type SecretRef = z.infer<typeof SecretRef>;

const Id = z
  .string()
  .check(
    z.regex(
      /^[a-z0-9][a-z0-9-]{0,47}$/,
      'use 1-48 lowercase letters, digits and dashes, starting with a letter or digit',
    ),
  );

const PasswordAuth = z.strictObject({
  type: z.literal('password'),
  password: SecretRef,
  /**
   * `auto` picks SASL PLAIN when advertised, else USER/PASS. `apop` is used only when asked for
   * (MD5-based, CVE-2007-1558), never chosen automatically.
   */
  mechanism: z._default(z.enum(['auto', 'plain', 'user', 'apop']), 'auto'),
});

const OAuthCommon = {
  mechanism: z._default(z.enum(['xoauth2', 'oauthbearer']), 'xoauth2'),
  /** Base URL of the identity provider; configurable for tests and sovereign clouds. */
  authority: z.optional(z.string().check(z.url())),
};

const MicrosoftAppOnlyAuth = z.strictObject({
  type: z.literal('oauth2-microsoft-app'),
  tenantId: z.string().check(z.minLength(1)),
  clientId: z.string().check(z.minLength(1)),
  clientSecret: SecretRef,
  ...OAuthCommon,
});

const RefreshTokenAuth = z.strictObject({
  type: z.enum(['oauth2-microsoft-delegated', 'oauth2-google']),
  clientId: z.string().check(z.minLength(1)),
  clientSecret: z.optional(SecretRef),
  refreshToken: SecretRef,
  tenantId: z.optional(z.string().check(z.minLength(1))),
  ...OAuthCommon,
});

export const MailboxAuth = z.discriminatedUnion('type', [
  PasswordAuth,
  MicrosoftAppOnlyAuth,
  RefreshTokenAuth,
]);
export type MailboxAuth = z.infer<typeof MailboxAuth>;

export const Retention = z.union([
  z.literal('delete'),
  z.literal('keep'),
  z.strictObject({ deleteAfterDays: z.number().check(z.int(), z.gte(1), z.lte(3650)) }),
]);
export type Retention = z.infer<typeof Retention>;

export const MailboxConfig = z.strictObject({
  id: Id,
  host: z.string().check(z.minLength(1)),
  /** @default 995 for implicit TLS, 110 otherwise */
  port: z.optional(z.number().check(z.int(), z.gte(1), z.lte(65535))),
  /** `implicit` (port 995) is the default; `starttls` is a required upgrade, never opportunistic. */
  tls: z._default(z.enum(['implicit', 'starttls', 'none']), 'implicit'),
  /** PEM CA bundle (inline PEM or a file path) for self-hosted servers with a private CA. */
  ca: z.optional(z.string()),
  /** SHA-256 fingerprints (hex, colons optional) of acceptable server certificates. */
  pinSha256: z.optional(z.array(z.string())),
  /** Send credentials over an unencrypted connection. Only for local test servers. */
  allowInsecureAuth: z._default(z.boolean(), false),
  user: z.string().check(z.minLength(1)),
  auth: MailboxAuth,
  retention: z._default(Retention, 'delete'),
  /** Minutes between polls (EventBridge Scheduler rate in AWS, the loop interval locally). */
  pollEveryMinutes: z._default(z.number().check(z.int(), z.gte(1), z.lte(1440)), 5),
  limits: z._default(
    z.strictObject({
      /** Messages larger than this (per LIST) are skipped and reported as `email.skipped`. */
      maxMessageBytes: z._default(z.number().check(z.int(), z.gte(1)), 50 * 1024 * 1024),
      maxMessagesPerRun: z._default(z.number().check(z.int(), z.gte(1)), 500),
      maxBytesPerRun: z._default(z.number().check(z.int(), z.gte(1)), 1024 * 1024 * 1024),
    }),
    {
      maxMessageBytes: 50 * 1024 * 1024,
      maxMessagesPerRun: 500,
      maxBytesPerRun: 1024 * 1024 * 1024,
    },
  ),
});
export type MailboxConfig = z.infer<typeof MailboxConfig>;

/** A match rule value: a glob (`*@example.com`) or a regex written as `/.../flags`. */
const Pattern = z.string().check(z.minLength(1));
const Patterns = z.union([Pattern, z.array(Pattern).check(z.minLength(1))]);

export const EndpointMatch = z.strictObject({
  mailbox: z.optional(Patterns),
  from: z.optional(Patterns),
  to: z.optional(Patterns),
  subject: z.optional(Patterns),
  /** Header name (case-insensitive) to pattern. */
  header: z.optional(z.record(z.string(), Patterns)),
});
export type EndpointMatch = z.infer<typeof EndpointMatch>;

export const EndpointConfig = z.strictObject({
  id: Id,
  url: z.string().check(z.url()),
  /** Signing secrets (`whsec_...`). Two while rotating: every delivery is signed with each. */
  secrets: z.array(SecretRef).check(z.minLength(1), z.maxLength(4)),
  match: z._default(EndpointMatch, {}),
  /** `full`: the event with text and html. `thin`: ids, metadata and links only. */
  payload: z._default(z.enum(['full', 'thin']), 'full'),
  /** Allow http:// URLs. Only for local testing. */
  allowHttp: z._default(z.boolean(), false),
  /** Allow loopback, private and link-local addresses. Only for local testing. */
  allowPrivateNetwork: z._default(z.boolean(), false),
  timeoutMs: z._default(z.number().check(z.int(), z.gte(1000), z.lte(120_000)), 15_000),
  maxConcurrency: z._default(z.number().check(z.int(), z.gte(1), z.lte(100)), 10),
  enabled: z._default(z.boolean(), true),
});
export type EndpointConfig = z.infer<typeof EndpointConfig>;

export const DeliveryConfig = z.strictObject({
  /** Delay before each retry, in seconds (Standard Webhooks style: 5 s, 5 m, 30 m, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h). */
  retryScheduleSeconds: z._default(
    z.array(z.number().check(z.int(), z.gte(1), z.lte(86_400))).check(z.minLength(1), z.maxLength(20)),
    [5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400],
  ),
  /** Largest JSON body we send. */
  maxBodyBytes: z._default(z.number().check(z.int(), z.gte(16 * 1024), z.lte(6 * 1024 * 1024)), 256 * 1024),
  /** Attachments up to this size are inlined as base64 in `full` payloads (0 turns it off). */
  inlineAttachmentMaxBytes: z._default(z.number().check(z.int(), z.gte(0)), 0),
  /** Lifetime of pre-signed links to the raw message and attachments. */
  linkExpirySeconds: z._default(z.number().check(z.int(), z.gte(60), z.lte(604_800)), 6 * 3600),
});
export type DeliveryConfig = z.infer<typeof DeliveryConfig>;

export const ParseConfig = z.strictObject({
  /** `text` and `html` in the event are cut at this many characters, with a `truncated` flag. */
  maxBodyChars: z._default(z.number().check(z.int(), z.gte(1024)), 128 * 1024),
  maxParts: z._default(z.number().check(z.int(), z.gte(1)), 1000),
  maxDepth: z._default(z.number().check(z.int(), z.gte(1)), 20),
  maxHeaderBytes: z._default(z.number().check(z.int(), z.gte(1024)), 1024 * 1024),
  /** Wall-clock budget for parsing one message; past it the event carries `parseError`. */
  timeoutMs: z._default(z.number().check(z.int(), z.gte(100)), 30_000),
});
export type ParseConfig = z.infer<typeof ParseConfig>;

export const LocalConfig = z.strictObject({
  /** Directory for the archive, state and queue in local mode. */
  dataDir: z._default(z.string(), '.pophook'),
  /** JSON file of `{ "name": "value" }` that secret references resolve from in local mode. */
  secretsFile: z.optional(z.string()),
});

export const AwsConfig = z.strictObject({
  region: z.optional(z.string()),
  /** Archive retention: move raw mail to a colder class, or expire it. */
  archive: z._default(
    z.strictObject({
      versioned: z._default(z.boolean(), false),
      kmsKeyArn: z.optional(z.string()),
      transitionToInfrequentAccessDays: z.optional(z.number().check(z.int(), z.gte(30))),
      transitionToGlacierDays: z.optional(z.number().check(z.int(), z.gte(1))),
      expireDays: z.optional(z.number().check(z.int(), z.gte(1))),
      accessLogging: z._default(z.boolean(), false),
      retainOnDelete: z._default(z.boolean(), true),
    }),
    { versioned: false, accessLogging: false, retainOnDelete: true },
  ),
  alarmEmail: z.optional(z.string().check(z.email())),
  staticEgressIp: z._default(z.boolean(), false),
});

export const PophookConfig = z
  .strictObject({
    $schema: z.optional(z.string()),
    version: z.literal(1),
    mailboxes: z.array(MailboxConfig).check(z.minLength(1)),
    endpoints: z._default(z.array(EndpointConfig), []),
    delivery: z._default(DeliveryConfig, DeliveryConfig.parse({})),
    parse: z._default(ParseConfig, ParseConfig.parse({})),
    local: z._default(LocalConfig, LocalConfig.parse({})),
    aws: z._default(AwsConfig, AwsConfig.parse({})),
  })
  .check(
    z.superRefine((config, ctx) => {
      const seen = new Set<string>();
      config.mailboxes.forEach((m, i) => {
        if (seen.has(m.id))
          ctx.addIssue({
            code: 'custom',
            path: ['mailboxes', i, 'id'],
            message: `duplicate mailbox id "${m.id}"`,
          });
        seen.add(m.id);
      });
      const eps = new Set<string>();
      config.endpoints.forEach((e, i) => {
        if (eps.has(e.id))
          ctx.addIssue({
            code: 'custom',
            path: ['endpoints', i, 'id'],
            message: `duplicate endpoint id "${e.id}"`,
          });
        eps.add(e.id);
        if (e.url.startsWith('http://') && !e.allowHttp)
          ctx.addIssue({
            code: 'custom',
            path: ['endpoints', i, 'url'],
            message: 'webhook URLs must be https; set allowHttp: true only for local testing',
          });
      });
    }),
  );
export type PophookConfig = z.infer<typeof PophookConfig>;
