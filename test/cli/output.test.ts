import { describe, expect, it } from 'vitest';
import { createOutput, formatBytes, formatClock, shouldUseColour } from '../../cli/output.js';
import { capture } from './capture.js';

const ESC = '\u001b[';

describe('colour', () => {
  it('is on for a terminal only, off under NO_COLOR or TERM=dumb, and flags win', () => {
    const tty = { write: () => true, isTTY: true };
    const pipe = { write: () => true, isTTY: false };
    expect(shouldUseColour(tty, {})).toBe(true);
    expect(shouldUseColour(pipe, {})).toBe(false);
    expect(shouldUseColour(tty, { NO_COLOR: '1' })).toBe(false);
    expect(shouldUseColour(tty, { NO_COLOR: '' })).toBe(true); // no-color.org: only a non-empty value counts
    expect(shouldUseColour(tty, { TERM: 'dumb' })).toBe(false);
    expect(shouldUseColour(pipe, { FORCE_COLOR: '1' })).toBe(true);
    expect(shouldUseColour(tty, { NO_COLOR: '1' }, true)).toBe(true);
    expect(shouldUseColour(tty, {}, false)).toBe(false);
  });

  it('writes escapes to a terminal and plain text elsewhere', () => {
    const ttyErr = capture(true);
    createOutput({ stdout: capture(true), stderr: ttyErr, env: {} }).error('boom');
    expect(ttyErr.text).toContain(ESC);
    const noColour = capture(true);
    createOutput({ stdout: capture(true), stderr: noColour, env: { NO_COLOR: '1' } }).error('boom');
    expect(noColour.text).toBe('error: boom\n');
  });

  it('aligns tables', () => {
    const stdout = capture();
    createOutput({ stdout, stderr: capture(), env: {} }).table([
      ['a', 'one'],
      ['longer', 'two'],
    ]);
    expect(stdout.text).toBe('a       one\nlonger  two\n');
  });
});

describe('progress line', () => {
  it('redraws in place on a terminal with messages, bytes, rate and ETA', () => {
    let now = 0;
    const stderr = capture(true);
    const out = createOutput({ stdout: capture(true), stderr, env: { NO_COLOR: '1' }, now: () => now });
    const progress = out.progress('support', { messages: 10, bytes: 10 * 1024 * 1024 });
    now = 2000;
    progress.update({ messages: 4, bytes: 4 * 1024 * 1024 }, 'RETR 5');
    const last = stderr.text.split('\r\u001b[2K').pop();
    expect(last).toBe('support  4/10 msgs  4.0 MiB/10.0 MiB  2.0 MiB/s  ETA 0:03  RETR 5');
    out.print('a result'); // clears the line, prints, redraws
    progress.done('support: 10 messages in 5.0 s');
    expect(stderr.text.endsWith('\r\u001b[2Ksupport: 10 messages in 5.0 s\n')).toBe(true);
  });

  it('prints only now and then when stderr is not a terminal', () => {
    let now = 0;
    const stderr = capture(false);
    const progress = createOutput({ stdout: capture(), stderr, env: {}, now: () => now }).progress('poll');
    for (let i = 1; i <= 100; i++) {
      now = i * 250; // 25 s in total
      progress.update({ messages: i, bytes: i * 1000 });
    }
    progress.done();
    expect(stderr.text.trim().split('\n')).toHaveLength(2); // at 10 s and 20 s
    expect(stderr.text).not.toContain('\r');
  });
});

describe('formatting', () => {
  it('formats bytes and clock times', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(250 * 1024 * 1024)).toBe('250 MiB');
    expect(formatClock(7)).toBe('0:07');
    expect(formatClock(3723)).toBe('1:02:03');
  });
});
