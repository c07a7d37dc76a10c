/**
 * Installs zod/mini's English messages: import it for that side effect, next to
 * `import * as z from 'zod/mini'`. (Re-exporting the `z` namespace from here made esbuild keep all of
 * zod/mini, its ~40 locales and JSON Schema code: ~330 KB in each Lambda bundle, ~35-60 ms per load.)
 * Without the locale every problem reads "Invalid input".
 */
import { en } from 'zod/locales';
import { config } from 'zod/mini';

if (!config().localeError) config(en());
