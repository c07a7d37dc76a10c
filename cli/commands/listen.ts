/**
 * `pophook listen`: a local webhook receiver that verifies signatures and prints each delivery.
 */
import {
  checkWebhookSecret,
  formatDelivery,
  generateWebhookSecret,
  type ReceivedDelivery,
  startWebhookReceiver,
} from '../../shared/demo/receiver.js';
import { type CliContext, EXIT, type ExitCode, UsageError, untilAborted } from '../context.js';

export interface ListenOptions {
  port: number;
  host: string;
  /** One or more `whsec_` secrets (several while rotating); one is generated when none is given. */
  secret?: string[];
  /** One JSON line per delivery instead of the readable block. */
  json?: boolean;
}

/** Key the endpoint snippet uses in the local secrets file. */
const SNIPPET_SECRET_NAME = 'local-webhook';

export async function runListen(opts: ListenOptions, ctx: CliContext): Promise<ExitCode> {
  const given = opts.secret ?? [];
  for (const secret of given) {
    const problem = checkWebhookSecret(secret);
    if (problem) throw new UsageError(`--secret is not usable: ${problem}.`);
  }
  const generated = given.length === 0;
  const secrets = generated ? [generateWebhookSecret()] : given;
  let total = 0;
  let verified = 0;
  const onDelivery = (d: ReceivedDelivery) => {
    total++;
    if (d.verified) verified++;
    if (opts.json) {
      ctx.out.print(
        JSON.stringify({
          receivedAt: d.receivedAt.toISOString(),
          webhookId: d.webhookId ?? null,
          verified: d.verified,
          failure: d.failure ?? null,
          repeat: d.repeat,
          body: d.body ?? null,
        }),
      );
    } else {
      ctx.out.print(formatDelivery(d, ctx.out.style));
      ctx.out.print();
    }
  };
  const receiver = await startWebhookReceiver({
    secrets,
    host: opts.host,
    port: opts.port,
    onDelivery,
    logger: ctx.logger,
  });
  const s = ctx.out.errStyle;
  ctx.out.info(`${s.bold('pophook listen')}: receiving webhooks on ${s.cyan(receiver.url)}`);
  if (generated) {
    ctx.out.info(`signing secret (generated; pass --secret to reuse one): ${s.bold(secrets[0] ?? '')}`);
    ctx.out.info(
      s.dim(
        `put it in your local secrets file as "${SNIPPET_SECRET_NAME}", then add this endpoint to your config:`,
      ),
    );
    ctx.out.info(
      s.dim(
        [
          '  endpoints:',
          '    - id: local',
          `      url: ${receiver.url}`,
          `      secrets: [{ secret: ${SNIPPET_SECRET_NAME} }]`,
          '      allowHttp: true',
          '      allowPrivateNetwork: true',
        ].join('\n'),
      ),
    );
  }
  ctx.out.info(s.dim('answers 200 to correctly signed deliveries and 401 to the rest; Ctrl-C to stop'));
  await untilAborted(ctx.signal);
  await receiver.close();
  ctx.out.info(`stopped after ${total} deliver${total === 1 ? 'y' : 'ies'} (${verified} verified)`);
  return EXIT.OK;
}
