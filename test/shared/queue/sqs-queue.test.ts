import { SendMessageBatchCommand, type SendMessageBatchCommandInput, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QueueError } from '../../../shared/errors.js';
import { createMemoryLogger } from '../../../shared/log.js';
import { MAX_QUEUE_MESSAGE_BYTES, type QueueSendItem } from '../../../shared/queue/queue.js';
import {
  SEND_MAX_ATTEMPTS,
  SEND_RETRY_MAX_MS,
  SQS_BATCH_MAX_BYTES,
  SqsJobQueue,
} from '../../../shared/queue/sqs-queue.js';

const QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/pophook-deliveries';
const sqsMock = mockClient(SQSClient);

let sleeps: number[];
let logger: ReturnType<typeof createMemoryLogger>;
let queue: SqsJobQueue;

beforeEach(() => {
  sqsMock.reset();
  sleeps = [];
  logger = createMemoryLogger();
  queue = new SqsJobQueue({
    client: new SQSClient({ region: 'us-east-1' }),
    queueUrl: QUEUE_URL,
    logger,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
});

afterEach(() => {
  sqsMock.reset();
});

const items = (n: number, body = '{"v":1}'): QueueSendItem[] =>
  Array.from({ length: n }, (_, i) => ({ id: `job-${i}`, body }));

/** Answers like SQS: every entry succeeds unless `fail` says otherwise. */
function answer(fail: (id: string, call: number) => { SenderFault: boolean; Code: string } | undefined) {
  let call = 0;
  sqsMock.on(SendMessageBatchCommand).callsFake((input: SendMessageBatchCommandInput) => {
    call++;
    const entries = input.Entries ?? [];
    const failed = entries.flatMap((e) => {
      const f = fail(e.Id ?? '', call);
      return f ? [{ Id: e.Id, Message: 'simulated', ...f }] : [];
    });
    const failedIds = new Set(failed.map((f) => f.Id));
    return {
      Successful: entries
        .filter((e) => !failedIds.has(e.Id))
        .map((e) => ({ Id: e.Id, MessageId: `m-${e.Id}`, MD5OfMessageBody: 'x' })),
      Failed: failed,
    };
  });
}

const batches = () =>
  sqsMock.commandCalls(SendMessageBatchCommand).map((c) => c.args[0].input.Entries?.map((e) => e.Id) ?? []);

describe('SqsJobQueue batching', () => {
  it('sends 25 items as 3 batches of at most 10, in order, with bodies and delays', async () => {
    answer(() => undefined);
    const list = items(25);
    list[3] = { ...list[3], id: 'job-3', body: 'x', delaySeconds: 30 };
    await queue.send(list);
    const calls = sqsMock.commandCalls(SendMessageBatchCommand);
    expect(calls).toHaveLength(3);
    expect(batches().map((b) => b.length)).toEqual([10, 10, 5]);
    expect(batches().flat()).toEqual(list.map((i) => i.id));
    const first = calls[0]?.args[0].input;
    expect(first?.QueueUrl).toBe(QUEUE_URL);
    expect(first?.Entries?.[3]).toEqual({ Id: 'job-3', MessageBody: 'x', DelaySeconds: 30 });
    expect(first?.Entries?.[0]).toEqual({ Id: 'job-0', MessageBody: '{"v":1}' });
  });

  it('splits batches at the byte limit', async () => {
    answer(() => undefined);
    const body = 'a'.repeat(100 * 1024);
    await queue.send(items(5, body)); // 2 + 2 + 1: three 100 KiB bodies exceed 256 KiB
    expect(batches().map((b) => b.length)).toEqual([2, 2, 1]);
    for (const call of sqsMock.commandCalls(SendMessageBatchCommand)) {
      const total = (call.args[0].input.Entries ?? []).reduce(
        (n, e) => n + Buffer.byteLength(e.MessageBody ?? ''),
        0,
      );
      expect(total).toBeLessThanOrEqual(SQS_BATCH_MAX_BYTES);
    }
  });

  it('sends one maximum-size body on its own', async () => {
    answer(() => undefined);
    await queue.send([
      { id: 'small', body: 'x' },
      { id: 'max', body: 'b'.repeat(MAX_QUEUE_MESSAGE_BYTES) },
      { id: 'small2', body: 'y' },
    ]);
    expect(batches()).toEqual([['small'], ['max'], ['small2']]);
  });

  it('makes no call for an empty send', async () => {
    await queue.send([]);
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
  });
});

describe('SqsJobQueue validation', () => {
  const cases: Array<[string, QueueSendItem]> = [
    ['a lone surrogate', { id: 'bad', body: '{"s":"\ud800"}' }],
    ['a NUL character', { id: 'bad', body: 'a\u0000b' }],
    ['a body over 256 KiB', { id: 'bad', body: 'é'.repeat(MAX_QUEUE_MESSAGE_BYTES / 2 + 1) }],
    ['an id SQS refuses', { id: 'has space', body: '{}' }],
    ['a delay over 15 minutes', { id: 'bad', body: '{}', delaySeconds: 901 }],
  ];
  it.each(cases)('refuses %s before sending anything, naming the item', async (_what, bad) => {
    answer(() => undefined);
    const err = await queue.send([...items(3), bad]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueError);
    expect(err).toMatchObject({ code: 'QUEUE_MESSAGE_INVALID', transient: false });
    expect((err as Error).message).toContain(`"${bad.id}"`);
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
  });

  it('refuses duplicate ids in one send', async () => {
    await expect(queue.send([...items(2), { id: 'job-0', body: '{}' }])).rejects.toMatchObject({
      code: 'QUEUE_MESSAGE_INVALID',
      message: expect.stringContaining('twice'),
    });
  });
});

describe('SqsJobQueue failures', () => {
  it('retries entries that failed in a partial batch failure, then succeeds', async () => {
    answer((id, call) =>
      call === 1 && (id === 'job-2' || id === 'job-7')
        ? { SenderFault: false, Code: 'ThrottlingException' }
        : undefined,
    );
    await queue.send(items(10));
    expect(batches()).toEqual([items(10).map((i) => i.id), ['job-2', 'job-7']]);
    expect(sleeps).toHaveLength(1);
    expect(logger.lines.some((l) => l.includes('queue send partly failed; retrying'))).toBe(true);
  });

  it('gives up after bounded attempts and names the failed ids in a transient QueueError', async () => {
    answer((id) =>
      id === 'job-1' || id === 'job-12' ? { SenderFault: false, Code: 'InternalError' } : undefined,
    );
    const err = await queue.send(items(15)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueError);
    expect(err).toMatchObject({
      code: 'QUEUE_SEND_FAILED',
      transient: true,
      details: { failedIds: ['job-1', 'job-12'], sent: 13, errorCodes: ['InternalError'] },
    });
    expect((err as Error).message).toContain('job-1, job-12');
    // Each of the two batches: one first try plus SEND_MAX_ATTEMPTS - 1 retries.
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(2 * SEND_MAX_ATTEMPTS);
    expect(sleeps).toHaveLength(2 * (SEND_MAX_ATTEMPTS - 1));
    for (const ms of sleeps) expect(ms).toBeLessThanOrEqual(SEND_RETRY_MAX_MS);
  });

  it('does not retry entries SQS refuses as our fault, and reports them as permanent', async () => {
    answer((id) => (id === 'job-4' ? { SenderFault: true, Code: 'InvalidParameterValue' } : undefined));
    await expect(queue.send(items(6))).rejects.toMatchObject({
      code: 'QUEUE_SEND_FAILED',
      transient: false,
      details: { failedIds: ['job-4'] },
    });
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(1);
  });

  it('retries a whole batch when the call itself fails, then succeeds', async () => {
    sqsMock
      .on(SendMessageBatchCommand)
      .rejectsOnce(Object.assign(new Error('socket hang up'), { name: 'TimeoutError' }))
      .resolves({ Successful: items(3).map((i) => ({ Id: i.id, MessageId: 'm', MD5OfMessageBody: 'x' })) });
    await queue.send(items(3));
    expect(batches()).toEqual([
      ['job-0', 'job-1', 'job-2'],
      ['job-0', 'job-1', 'job-2'],
    ]);
  });

  it('resends entries the response does not mention (a duplicate beats a loss)', async () => {
    sqsMock
      .on(SendMessageBatchCommand)
      .resolvesOnce({ Successful: [{ Id: 'job-0', MessageId: 'm', MD5OfMessageBody: 'x' }] })
      .resolves({ Successful: [{ Id: 'job-1', MessageId: 'm', MD5OfMessageBody: 'x' }] });
    await queue.send(items(2));
    expect(batches()).toEqual([['job-0', 'job-1'], ['job-1']]);
  });

  it('fails at once, permanently, when the queue does not exist', async () => {
    sqsMock
      .on(SendMessageBatchCommand)
      .rejects(
        Object.assign(new Error('The specified queue does not exist.'), { name: 'QueueDoesNotExist' }),
      );
    const err = await queue.send(items(12)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'QUEUE_SEND_FAILED', transient: false });
    expect((err as Error).message).toMatch(/does not exist; deploy the stack/);
    expect(sqsMock.commandCalls(SendMessageBatchCommand)).toHaveLength(1);
  });

  it('describes itself by queue name', () => {
    expect(queue.description).toBe('SQS queue pophook-deliveries');
  });
});
