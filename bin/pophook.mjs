#!/usr/bin/env node
// The `pophook` command. Runs the TypeScript CLI directly (no build step) by registering tsx's ESM
// loader, with the repository's own tsconfig whatever the working directory is.
import { fileURLToPath } from 'node:url';

let register;
try {
  ({ register } = await import('tsx/esm/api'));
} catch {
  process.stderr.write(
    'error: pophook cannot start: its dependencies are missing; run "npm ci" in the pophook folder.\n',
  );
  process.exit(1);
}
register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
const { runCli } = await import('../cli/main.ts');
await runCli();
