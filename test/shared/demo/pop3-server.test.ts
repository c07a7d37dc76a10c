import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DemoPop3Server, startDemoPop3Server } from '../../../shared/demo/pop3-server.js';
import { RawPop3, unstuff } from './raw-pop3.js';

const uidlOf = (name: string, content: string | Buffer) =>
  createHash('sha256').update(name).update('\0').update(content).digest('hex');

let dir: string;
const servers: DemoPop3Server[] = [];
const clients: RawPop3[] = [];

async function start(options: { password?: string } = {}): Promise<DemoPop3Server> {
  const server = await startDemoPop3Server({ dir, password: options.password ?? 'secret-pw' });
  servers.push(server);
  return server;
}

async function connect(server: DemoPop3Server): Promise<RawPop3> {
  const client = await RawPop3.connect(server.port);
  clients.push(client);
  return client;
}

async function session(server: DemoPop3Server): Promise<RawPop3> {
  const client = await connect(server);
  expect(await client.login(server.password)).toMatch(/^\+OK/);
  return client;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pophook-demo-pop3-'));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

describe('demo POP3 server', () => {
  it('advertises its capabilities and rejects a wrong password with [AUTH]', async () => {
    const server = await start();
    const client = await connect(server);
    expect(await client.line()).toMatch(/^\+OK/);
    const capa = await client.multi('CAPA');
    const caps = capa.body.toString().split('\r\n');
    expect(caps).toEqual(expect.arrayContaining(['USER', 'UIDL', 'TOP', 'PIPELINING', 'RESP-CODES']));
    expect(await client.command('STAT')).toMatch(/^-ERR/);
    expect(await client.command('PASS secret-pw')).toBe('-ERR send USER first');
    await client.command('USER demo');
    expect(await client.command('PASS wrong')).toMatch(/^-ERR \[AUTH\]/);
    await client.command('USER someone-else');
    expect(await client.command('PASS secret-pw')).toMatch(/^-ERR \[AUTH\]/);
    await client.command('USER demo');
    expect(await client.command('PASS wrong')).toMatch(/^-ERR \[AUTH\].*closing/);
    await client.waitClosed();
  });

  it('logs in and reports STAT, LIST and UIDL for the .eml files only', async () => {
    await writeFile(path.join(dir, 'b.eml'), 'Subject: b\n\nbody b\n');
    await writeFile(path.join(dir, 'a.eml'), 'Subject: a\r\n\r\nbody a\r\n');
    await writeFile(path.join(dir, 'notes.txt'), 'not mail');
    await writeFile(path.join(dir, '.partial.eml'), 'being written');
    const server = await start();
    const client = await connect(server);
    expect(await client.login(server.password)).toBe('+OK logged in, 2 messages (44 octets)');
    // a.eml is already CRLF (22 bytes); b.eml has 3 LF line ends that become CRLF (19 + 3 = 22).
    expect(await client.command('STAT')).toBe('+OK 2 44');
    expect((await client.multi('LIST')).body.toString()).toBe('1 22\r\n2 22\r\n');
    expect(await client.command('LIST 2')).toBe('+OK 2 22');
    expect(await client.command('LIST 3')).toMatch(/^-ERR no such message/);
    expect(await client.command('LIST x')).toMatch(/^-ERR invalid message number/);
    const uidl = (await client.multi('UIDL')).body.toString();
    expect(uidl).toBe(
      `1 ${uidlOf('a.eml', 'Subject: a\r\n\r\nbody a\r\n')}\r\n2 ${uidlOf('b.eml', 'Subject: b\n\nbody b\n')}\r\n`,
    );
    expect(await client.command('NOOP')).toBe('+OK');
    expect(await client.command('USER demo')).toBe('-ERR already logged in');
    expect(await client.command('XYZZY')).toBe('-ERR unknown command');
  });

  it('keeps each UIDL stable across a restart', async () => {
    await writeFile(path.join(dir, 'one.eml'), 'Subject: 1\n\nx\n');
    await writeFile(path.join(dir, 'two.eml'), 'Subject: 2\n\ny\n');
    const first = await start();
    const c1 = await session(first);
    const before = (await c1.multi('UIDL')).body.toString();
    c1.close();
    await first.close();

    const second = await start({ password: 'another' });
    const c2 = await session(second);
    expect((await c2.multi('UIDL')).body.toString()).toBe(before);
    expect(before).toContain(uidlOf('one.eml', 'Subject: 1\n\nx\n'));
  });

  it('serves RETR byte-exact: LF to CRLF, dot-stuffing, a final CRLF added, size as advertised', async () => {
    const onDisk = 'Subject: dots\n\nfirst\n.starts with a dot\n..two dots\n.\nmid . dot\nno final newline';
    await writeFile(path.join(dir, 'dots.eml'), onDisk);
    const server = await start();
    const client = await session(server);
    const expected = `${onDisk.replace(/\n/g, '\r\n')}\r\n`;
    expect(await client.command('LIST 1')).toBe(`+OK 1 ${Buffer.byteLength(expected)}`);
    const { status, body } = await client.multi('RETR 1');
    expect(status).toBe(`+OK ${Buffer.byteLength(expected)} octets`);
    expect(body.toString()).toBe(
      'Subject: dots\r\n\r\nfirst\r\n..starts with a dot\r\n...two dots\r\n..\r\nmid . dot\r\nno final newline\r\n',
    );
    expect(unstuff(body).toString()).toBe(expected);
  });

  it('keeps CRLF, bare CR and 8-bit bytes as they are', async () => {
    const onDisk = Buffer.concat([
      Buffer.from('Subject: bytes\r\n\r\ncr\rinside\r\n'),
      Buffer.from([0xe9, 0x00, 0xff, 0x0a]),
      Buffer.from('.'),
    ]);
    await writeFile(path.join(dir, 'bytes.eml'), onDisk);
    const server = await start();
    const client = await session(server);
    const { body } = await client.multi('RETR 1');
    expect(unstuff(body)).toEqual(
      Buffer.concat([
        Buffer.from('Subject: bytes\r\n\r\ncr\rinside\r\n'),
        Buffer.from([0xe9, 0x00, 0xff, 0x0d, 0x0a]),
        Buffer.from('.\r\n'),
      ]),
    );
  });

  it('answers TOP with the header, the blank line and n body lines', async () => {
    await writeFile(path.join(dir, 'top.eml'), 'A: 1\nB: 2\n\nline1\n.line2\nline3\n');
    const server = await start();
    const client = await session(server);
    expect((await client.multi('TOP 1 0')).body.toString()).toBe('A: 1\r\nB: 2\r\n\r\n');
    expect((await client.multi('TOP 1 2')).body.toString()).toBe('A: 1\r\nB: 2\r\n\r\nline1\r\n..line2\r\n');
    expect((await client.multi('TOP 1 99')).body.toString()).toBe(
      'A: 1\r\nB: 2\r\n\r\nline1\r\n..line2\r\nline3\r\n',
    );
    expect(await client.command('TOP 1')).toMatch(/^-ERR usage/);
  });

  it('moves files to served/ on DELE + QUIT, and deletes nothing on RSET or a dropped connection', async () => {
    await writeFile(path.join(dir, 'keep.eml'), 'Subject: keep\n\nk\n');
    await writeFile(path.join(dir, 'gone.eml'), 'Subject: gone\n\ng\n');
    const server = await start();

    const dropped = await session(server);
    expect(await dropped.command('DELE 1')).toBe('+OK message 1 deleted');
    expect(await dropped.command('DELE 1')).toBe('-ERR message 1 already deleted');
    expect(await dropped.command('RETR 1')).toBe('-ERR message 1 already deleted');
    expect(await dropped.command('STAT')).toMatch(/^\+OK 1 /);
    dropped.close();
    await new Promise((r) => setTimeout(r, 50));

    const reset = await session(server);
    await reset.command('DELE 1');
    expect(await reset.command('RSET')).toMatch(/^\+OK/);
    expect(await reset.command('QUIT')).toBe('+OK bye, 2 messages left');
    await reset.waitClosed();
    expect((await readdir(dir)).sort()).toEqual(['gone.eml', 'keep.eml']);

    const client = await session(server);
    expect(await client.command('DELE 1')).toMatch(/^\+OK/); // gone.eml sorts first
    expect(await client.command('QUIT')).toBe('+OK bye, 1 messages left');
    await client.waitClosed();
    expect((await readdir(dir)).sort()).toEqual(['keep.eml', 'served']);
    expect(await readFile(path.join(server.servedDir, 'gone.eml'), 'utf8')).toBe('Subject: gone\n\ng\n');
  });

  it('never overwrites in served/: a second file of the same name gets a suffix', async () => {
    const server = await start();
    for (const body of ['first', 'second']) {
      await writeFile(path.join(dir, 'same.eml'), `Subject: ${body}\n\n${body}\n`);
      const client = await session(server);
      await client.command('DELE 1');
      expect(await client.command('QUIT')).toMatch(/^\+OK/);
      await client.waitClosed();
    }
    expect((await readdir(server.servedDir)).sort()).toEqual(['same.1.eml', 'same.eml']);
    expect(await readFile(path.join(server.servedDir, 'same.1.eml'), 'utf8')).toContain('second');
  });

  it('sees files dropped in between logins, and locks the mailbox to one session', async () => {
    const server = await start();
    const first = await session(server);
    expect(await first.command('STAT')).toBe('+OK 0 0');

    const other = await connect(server);
    expect(await other.login(server.password)).toMatch(/^-ERR \[IN-USE\]/);
    other.close();

    await writeFile(path.join(dir, 'new.eml'), 'Subject: new\n\nhello\n');
    expect(await first.command('STAT')).toBe('+OK 0 0'); // the snapshot is taken at login
    await first.command('QUIT');
    await first.waitClosed();

    const second = await session(server);
    expect(await second.command('STAT')).toMatch(/^\+OK 1 /);
    expect(unstuff((await second.multi('RETR 1')).body).toString()).toBe('Subject: new\r\n\r\nhello\r\n');
  });

  it('refuses a message that changed on disk since login', async () => {
    await writeFile(path.join(dir, 'm.eml'), 'Subject: v1\n\nx\n');
    const server = await start();
    const client = await session(server);
    await writeFile(path.join(dir, 'm.eml'), 'Subject: version two\n\nxyz\n');
    expect(await client.command('RETR 1')).toMatch(/^-ERR \[SYS\/TEMP\] message 1 changed/);
    await client.command('DELE 1');
    expect(await client.command('QUIT')).toMatch(/^-ERR \[SYS\/TEMP\] 1 deleted messages were not removed/);
    expect(await readdir(dir)).toContain('m.eml');
  });

  it('answers pipelined commands in order', async () => {
    await writeFile(path.join(dir, 'p1.eml'), 'Subject: p1\n\n.one\n');
    await writeFile(path.join(dir, 'p2.eml'), 'Subject: p2\n\ntwo\n');
    const server = await start();
    const client = await connect(server);
    await client.line();
    client.send(
      `USER demo\r\nPASS ${server.password}\r\nSTAT\r\nLIST\r\nRETR 1\r\nRETR 2\r\nDELE 2\r\nNOOP\r\nQUIT\r\n`,
    );
    expect(await client.line()).toBe('+OK send PASS');
    expect(await client.line()).toMatch(/^\+OK logged in, 2 messages/);
    expect(await client.line()).toMatch(/^\+OK 2 /);
    expect(await client.line()).toMatch(/^\+OK 2 messages/);
    expect((await client.body()).toString()).toMatch(/^1 \d+\r\n2 \d+\r\n$/);
    expect(await client.line()).toMatch(/^\+OK \d+ octets/);
    expect((await client.body()).toString()).toBe('Subject: p1\r\n\r\n..one\r\n');
    expect(await client.line()).toMatch(/^\+OK \d+ octets/);
    expect((await client.body()).toString()).toBe('Subject: p2\r\n\r\ntwo\r\n');
    expect(await client.line()).toBe('+OK message 2 deleted');
    expect(await client.line()).toBe('+OK');
    expect(await client.line()).toBe('+OK bye, 1 messages left');
    await client.waitClosed();
    expect(await readdir(server.servedDir)).toEqual(['p2.eml']);
  });

  it('hangs up on a command line longer than 255 bytes', async () => {
    const server = await start();
    const client = await connect(server);
    await client.line();
    client.send(`USER ${'x'.repeat(300)}\r\n`);
    expect(await client.line()).toBe('-ERR command line too long');
    await client.waitClosed();
  });

  it('streams a 4 MB message byte-exact', async () => {
    const line = `${'a'.repeat(70)}\n.${'b'.repeat(60)}\n`;
    const onDisk = `Subject: big\n\n${line.repeat(30_000)}`; // about 4 MB
    await writeFile(path.join(dir, 'big.eml'), onDisk);
    const server = await start();
    const client = await session(server);
    const { status, body } = await client.multi('RETR 1');
    const expected = Buffer.from(onDisk.replace(/\n/g, '\r\n'));
    expect(status).toBe(`+OK ${expected.length} octets`);
    expect(unstuff(body).equals(expected)).toBe(true);
  });

  it('listens on loopback only', async () => {
    await expect(startDemoPop3Server({ dir, host: '0.0.0.0' })).rejects.toThrow(/only listens on loopback/);
  });
});
