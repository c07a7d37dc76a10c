/** In-memory stdout/stderr for calling the CLI in-process. */
export interface Capture {
  write(chunk: string): boolean;
  isTTY: boolean;
  columns: number;
  readonly text: string;
}

export function capture(isTTY = false): Capture {
  let text = '';
  return {
    write(chunk: string) {
      text += chunk;
      return true;
    },
    isTTY,
    columns: 120,
    get text() {
      return text;
    },
  };
}
