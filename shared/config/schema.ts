/**
 * The one configuration file, shared by local mode, the Lambda functions and the CDK app. Parsed once,
 * at the boundary, with this schema; nothing else interprets raw config. Secrets are references
 * (`{ secret: "name" }`), never values: they resolve through Secrets Manager in AWS and a local secrets
 * file or the environment locally.
 */
import { z } from 'zod';

/** A reference to a secret: a Secrets Manager name or ARN, or a key in the local secrets file. */
export const SecretRef = z
  .object({
    secret: z.string().min(1).describe('Secrets Manager name or ARN (AWS), or key in the local secrets file'),
    /** When the secret is a JSON object, the field to read. */
    field: z.string().min(1).optional(),
  })
  .strict();
export type SecretRef = z.infer<typeof SecretRef>;

const Id = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9-]{0,47}$/,
    'use 1-48 lowercase letters, digits and dashes, starting with a letter or digit',
  );

const PasswordAuth = z
  .object({
    type: z.literal('password'),
    password: SecretRef,
    /**
     * `auto` picks SASL PLAIN when advertised, else USER/PASS. `apop` is used only when asked for
     * (MD5-based, CVE-2007-1558), never chosen automatically.
     */
    mechanism: z.enum(['auto', 'plain', 'user', 'apop']).default('auto'),
  })
  .strict();

const OAuthCommon = {
  mechanism: z.enum(['xoauth2', 'oauthbearer']).default('xoauth2'),
  /** Base URL of the identity provider; configurable for tests and sovereign clouds. */
  authority: z.string().url().optional(),
};

const MicrosoftAppOnlyAuth = z
  .object({
    type: z.literal('oauth2-microsoft-app'),
    tenantId: z.string().min(1),
    clientId: z.string().min(1),
    clientSecret: SecretRef,
    ...OAuthCommon,
  })
  .strict();

const RefreshTokenAuth = z
  .object({
    type: z.enum(['oauth2-microsoft-delegated', 'oauth2-google']),
    clientId: z.string().min(1),
    clientSecret: SecretRef.optional(),
    refreshToken: SecretRef,
    tenantId: z.string().min(1).optional(),
    ...OAuthCommon,
  })
  .strict();

export const MailboxAuth = z.discriminatedUnion('type', [
  PasswordAuth,
  MicrosoftAppOnlyAuth,
  RefreshTokenAuth,
]);
export type MailboxAuth = z.infer<typeof MailboxAuth>;

export const Retention = z.union([
  z.literal('delete'),
  z.literal('keep'),
  z.object({ deleteAfterDays: z.number().int().min(1).max(3650) }).strict(),
]);
export type Retention = z.infer<typeof Retention>;

export const MailboxConfig = z
  .object({
    id: Id,
    host: z.string().min(1),
    /** @default 995 for implicit TLS, 110 otherwise */
    port: z.number().int().min(1).max(65535).optional(),
    /** `implicit` (port 995) is the default; `starttls` is a required upgrade, never opportunistic. */
    tls: z.enum(['implicit', 'starttls', 'none']).default('implicit'),
    /** PEM CA bundle (inline PEM or a file path) for self-hosted servers with a private CA. */
    ca: z.string().optional(),
    /** SHA-256 fingerprints (hex, colons optional) of acceptable server certificates. */
    pinSha256: z.array(z.string()).optional(),
    /** Send credentials over an unencrypted connection. Only for local test servers. */
    allowInsecureAuth: z.boolean().default(false),
    user: z.string().min(1),
    auth: MailboxAuth,
    retention: Retention.default('delete'),
    /** Minutes between polls (EventBridge Scheduler rate in AWS, the loop interval locally). */
    pollEveryMinutes: z.number().int().min(1).max(1440).default(5),
    limits: z
      .object({
        /** Messages larger than this (per LIST) are skipped and reported as `email.skipped`. */
        maxMessageBytes: z
          .number()
          .int()
          .min(1)
          .default(50 * 1024 * 1024),
        maxMessagesPerRun: z.number().int().min(1).default(500),
        maxBytesPerRun: z
          .number()
          .int()
          .min(1)
          .default(1024 * 1024 * 1024),
      })
      .strict()
      .default({
        maxMessageBytes: 50 * 1024 * 1024,
        maxMessagesPerRun: 500,
        maxBytesPerRun: 1024 * 1024 * 1024,
      }),
  })
  .strict();
export type MailboxConfig = z.infer<typeof MailboxConfig>;

/** A match rule value: a glob (`*@example.com`) or a regex written as `/.../flags`. */
const Pattern = z.string().min(1);
const Patterns = z.union([Pattern, z.array(Pattern).min(1)]);

export const EndpointMatch = z
  .object({
    mailbox: Patterns.optional(),
    from: Patterns.optional(),
    to: Patterns.optional(),
    subject: Patterns.optional(),
    /** Header name (case-insensitive) to pattern. */
    header: z.record(z.string(), Patterns).optional(),
  })
  .strict();
export type EndpointMatch = z.infer<typeof EndpointMatch>;

export const EndpointConfig = z
  .object({
    id: Id,
    url: z.string().url(),
    /** Signing secrets (`whsec_...`). Two while rotating: every delivery is signed with each. */
    secrets: z.array(SecretRef).min(1).max(4),
    match: EndpointMatch.default({}),
    /** `full`: the event with text and html. `thin`: ids, metadata and links only. */
    payload: z.enum(['full', 'thin']).default('full'),
    /** Allow http:// URLs. Only for local testing. */
    allowHttp: z.boolean().default(false),
    /** Allow loopback, private and link-local addresses. Only for local testing. */
    allowPrivateNetwork: z.boolean().default(false),
    timeoutMs: z.number().int().min(1000).max(120_000).default(15_000),
    maxConcurrency: z.number().int().min(1).max(100).default(10),
    enabled: z.boolean().default(true),
  })
  .strict();
export type EndpointConfig = z.infer<typeof EndpointConfig>;

export const DeliveryConfig = z
  .object({
    /** Delay before each retry, in seconds (Standard Webhooks style: 5 s, 5 m, 30 m, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h). */
    retryScheduleSeconds: z
      .array(z.number().int().min(1).max(86_400))
      .min(1)
      .max(20)
      .default([5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400]),
    /** Largest JSON body we send. */
    maxBodyBytes: z
      .number()
      .int()
      .min(16 * 1024)
      .max(6 * 1024 * 1024)
      .default(256 * 1024),
    /** Attachments up to this size are inlined as base64 in `full` payloads (0 turns it off). */
    inlineAttachmentMaxBytes: z.number().int().min(0).default(0),
    /** Lifetime of pre-signed links to the raw message and attachments. */
    linkExpirySeconds: z
      .number()
      .int()
      .min(60)
      .max(604_800)
      .default(6 * 3600),
  })
  .strict();
export type DeliveryConfig = z.infer<typeof DeliveryConfig>;

export const ParseConfig = z
  .object({
    /** `text` and `html` in the event are cut at this many characters, with a `truncated` flag. */
    maxBodyChars: z
      .number()
      .int()
      .min(1024)
      .default(128 * 1024),
    maxParts: z.number().int().min(1).default(1000),
    maxDepth: z.number().int().min(1).default(20),
    maxHeaderBytes: z
      .number()
      .int()
      .min(1024)
      .default(1024 * 1024),
    /** Wall-clock budget for parsing one message; past it the event carries `parseError`. */
    timeoutMs: z.number().int().min(100).default(30_000),
  })
  .strict();
export type ParseConfig = z.infer<typeof ParseConfig>;

export const LocalConfig = z
  .object({
    /** Directory for the archive, state and queue in local mode. */
    dataDir: z.string().default('.pophook'),
    /** JSON file of `{ "name": "value" }` that secret references resolve from in local mode. */
    secretsFile: z.string().optional(),
  })
  .strict();

export const AwsConfig = z
  .object({
    region: z.string().optional(),
    /** Archive retention: move raw mail to a colder class, or expire it. */
    archive: z
      .object({
        versioned: z.boolean().default(false),
        kmsKeyArn: z.string().optional(),
        transitionToInfrequentAccessDays: z.number().int().min(30).optional(),
        transitionToGlacierDays: z.number().int().min(1).optional(),
        expireDays: z.number().int().min(1).optional(),
        accessLogging: z.boolean().default(false),
        retainOnDelete: z.boolean().default(true),
      })
      .strict()
      .default({ versioned: false, accessLogging: false, retainOnDelete: true }),
    alarmEmail: z.string().email().optional(),
    staticEgressIp: z.boolean().default(false),
  })
  .strict();

export const PophookConfig = z
  .object({
    $schema: z.string().optional(),
    version: z.literal(1),
    mailboxes: z.array(MailboxConfig).min(1),
    endpoints: z.array(EndpointConfig).default([]),
    delivery: DeliveryConfig.default(DeliveryConfig.parse({})),
    parse: ParseConfig.default(ParseConfig.parse({})),
    local: LocalConfig.default(LocalConfig.parse({})),
    aws: AwsConfig.default(AwsConfig.parse({})),
  })
  .strict()
  .superRefine((config, ctx) => {
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
  });
export type PophookConfig = z.infer<typeof PophookConfig>;
