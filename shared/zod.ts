/**
 * The `z` every runtime schema uses: `zod/mini` with English messages installed. Both Lambda bundles
 * parse at start-up, and classic zod's `z` namespace drags its ~40 locales and JSON Schema converters
 * into a bundle (about 440 KiB minified); zod/mini leaves the locale to the app, and without one every
 * problem reads "Invalid input".
 */
import { en } from 'zod/locales';
import * as z from 'zod/mini';

if (!z.config().localeError) z.config(en());

export { z };
