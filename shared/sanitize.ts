/**
 * Server text (greetings, -ERR lines, HTTP response bodies) is attacker-controlled. Before it reaches
 * a log, an error message or a UI, strip control and ANSI escape characters and cap its length
 * (fetchmail CVE-2021-36386 came from long server error messages).
 */

/** Longest piece of foreign text we keep in one error or log field. */
export const MAX_FOREIGN_TEXT_CHARS = 256;

// ANSI CSI/OSC sequences first, then any remaining C0/C1 control or DEL.
const ANSI_SEQUENCE = /\u001b(?:\[[0-?]*[ -/]*[@-~]|\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|[@-Z\\-_])/g;
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function sanitizeForeignText(input: string | Buffer, maxChars = MAX_FOREIGN_TEXT_CHARS): string {
  const text = typeof input === 'string' ? input : input.subarray(0, maxChars * 4).toString('latin1');
  const clean = text.replace(ANSI_SEQUENCE, '').replace(CONTROL, '?');
  return clean.length > maxChars ? `${clean.slice(0, maxChars)}...(${clean.length - maxChars} more)` : clean;
}
