/**
 * A deliberately dumb POP3 client for tests: raw bytes in and out, no unstuffing, so tests see exactly
 * what a server put on the wire.
 */
import net from 'node:net';

export class RawPop3 {
  private buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<RawPop3> {
    const socket = net.connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawPop3(socket);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  private async waitFor(find: () => number, timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = find();
      if (at >= 0) return at;
      if (this.closed)
        throw new Error(`connection closed; unread: ${JSON.stringify(this.buffer.toString('latin1'))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; unread: ${JSON.stringify(this.buffer.toString('latin1'))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }

  /** The next CRLF-terminated line, without the CRLF. */
  async line(): Promise<string> {
    const at = await this.waitFor(() => this.buffer.indexOf('\r\n'));
    const line = this.buffer.subarray(0, at).toString('latin1');
    this.buffer = this.buffer.subarray(at + 2);
    return line;
  }

  /** The body of a multi-line reply exactly as sent (still dot-stuffed), without the final `.CRLF`. */
  async body(): Promise<Buffer> {
    const at = await this.waitFor(() => {
      if (this.buffer.subarray(0, 3).equals(Buffer.from('.\r\n'))) return 0;
      const i = this.buffer.indexOf('\r\n.\r\n');
      return i === -1 ? -1 : i + 2;
    });
    const body = this.buffer.subarray(0, at);
    this.buffer = this.buffer.subarray(at + 3);
    return Buffer.from(body);
  }

  /** Sends a command and returns its status line. */
  async command(line: string): Promise<string> {
    this.send(`${line}\r\n`);
    return this.line();
  }

  /** Sends a command expecting +OK and a multi-line body. */
  async multi(line: string): Promise<{ status: string; body: Buffer }> {
    const status = await this.command(line);
    if (!status.startsWith('+OK')) return { status, body: Buffer.alloc(0) };
    return { status, body: await this.body() };
  }

  async login(password: string, user = 'demo'): Promise<string> {
    const greeting = await this.line();
    if (!greeting.startsWith('+OK')) throw new Error(`bad greeting ${greeting}`);
    await this.command(`USER ${user}`);
    return this.command(`PASS ${password}`);
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    await this.waitFor(() => (this.closed ? 0 : -1), timeoutMs).catch((err: Error) => {
      if (!this.closed) throw err;
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Removes dot-stuffing from a multi-line body (what a correct client does). */
export function unstuff(body: Buffer): Buffer {
  const text = body.toString('latin1');
  return Buffer.from(text.replace(/(^|\r\n)\./g, '$1'), 'latin1');
}
