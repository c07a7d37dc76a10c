/**
 * Mail HTML is hostile. The console shows it in a sandboxed iframe (no scripts, no same-origin, no
 * forms, no top navigation) served with a CSP that forbids scripts and remote loads: those two are
 * the defence. This allowlist sanitiser is the second line, in case a browser gets either wrong:
 *
 * - Output is re-serialised from parser tokens: only allowlisted elements and attributes, every text
 *   and attribute value escaped, so a parser differential cannot smuggle markup through.
 * - Dropped with their content: script, style sheets we cannot vet (`<link>`), frames, objects,
 *   SVG/MathML, templates, form controls; dropped alone: meta (refresh), base, form.
 * - Event handlers (`on*`) never pass (not in the allowlist); URLs pass only with a known scheme
 *   (`javascript:`, `vbscript:`, `data:text/html` never do), after removing the whitespace and
 *   control characters browsers ignore inside a scheme.
 * - Remote content (http/https images, backgrounds, CSS `url()`) is removed and counted unless the
 *   user asked for it; `cid:` references to the message's own inline parts become `data:` URLs.
 * - Links open in a new browsing context with no opener and no referrer.
 */
import { Parser } from 'htmlparser2';
import { escapeHtml } from './html.js';

/** Elements kept (attributes filtered). Anything else is unwrapped (its text stays) unless dropped below. */
const ALLOWED_ELEMENTS = new Set(
  (
    'a abbr acronym address article aside b bdi bdo big blockquote br caption center cite code col colgroup ' +
    'dd del details dfn div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 header hr i img ins kbd ' +
    'li main mark nav ol p pre q rp rt ruby s samp section small span strike strong sub summary sup table ' +
    'tbody td tfoot th thead time tr tt u ul var wbr style'
  ).split(' '),
);

/** Elements removed together with everything inside them. */
const DROPPED_WITH_CONTENT = new Set(
  (
    'script noscript iframe frame frameset object embed applet param template svg math video audio ' +
    'source track canvas map area input button select option optgroup textarea datalist output keygen ' +
    'title xmp plaintext noembed noframes portal link meta base'
  ).split(' '),
);

/** Void elements: no closing tag is written. */
const VOID_ELEMENTS = new Set('br col hr img wbr'.split(' '));

/** Attributes allowed on any kept element. */
const ALLOWED_ATTRIBUTES = new Set(
  (
    'align valign bgcolor border cellpadding cellspacing color colspan rowspan dir face height width lang ' +
    'size style title alt start type summary nowrap span abbr scope headers clear hspace vspace class id ' +
    'reversed datetime cite open'
  ).split(' '),
);

/** Attributes holding a URL, per element; they get the URL checks. */
const URL_ATTRIBUTES: Record<string, readonly string[]> = {
  a: ['href'],
  img: ['src'],
  table: ['background'],
  td: ['background'],
  th: ['background'],
  tr: ['background'],
  div: ['background'],
  body: ['background'],
};

/** Link schemes a reader may follow (on click, in a new tab). */
const LINK_SCHEMES = ['http:', 'https:', 'mailto:'];
/** Image types a `data:` URL may carry (no SVG: it is a document, not a picture). */
const DATA_IMAGE = /^data:image\/(?:png|gif|jpe?g|webp|bmp|x-icon|avif);/i;
/** What browsers drop from inside a URL scheme ("java\tscript:"). */
const URL_NOISE = /[\u0000-\u0020\u007f-\u009f]/g;

export interface SanitizeOptions {
  /** Keep http(s) images, backgrounds and CSS urls (the user clicked "load remote content"). */
  allowRemote: boolean;
  /** Lower-cased Content-ID (without angle brackets) to a `data:` URL of that inline part. */
  cid?: ReadonlyMap<string, string>;
}

export interface SanitizedHtml {
  html: string;
  /** Remote references removed (0 when allowRemote). */
  remoteBlocked: number;
  /** Elements or attributes removed because they could run code or navigate. */
  removed: number;
}

/** Sanitises untrusted mail HTML into a fragment safe to place in the console's mail document. */
export function sanitizeMailHtml(input: string, options: SanitizeOptions): SanitizedHtml {
  const out: string[] = [];
  let remoteBlocked = 0;
  let removed = 0;
  /** For each open element: what we did with it, so its close tag matches. */
  const stack: ('kept' | 'unwrapped' | 'dropped')[] = [];
  let dropDepth = 0;
  let inStyle = 0;

  const checkUrl = (value: string, kind: 'link' | 'resource'): string | undefined => {
    const url = value.replace(URL_NOISE, '');
    const lower = url.toLowerCase();
    if (kind === 'link') {
      if (LINK_SCHEMES.some((s) => lower.startsWith(s))) return url;
      if (url.startsWith('#')) return url;
      removed++;
      return undefined;
    }
    if (lower.startsWith('cid:')) {
      const id = decodeCid(url.slice(4));
      const data = options.cid?.get(id);
      if (data) return data;
      return undefined;
    }
    if (DATA_IMAGE.test(url)) return url;
    if (lower.startsWith('https:') || lower.startsWith('http:') || lower.startsWith('//')) {
      if (options.allowRemote && lower.startsWith('https:')) return url;
      remoteBlocked++;
      return undefined;
    }
    removed++;
    return undefined;
  };

  const css = (text: string): string => {
    const result = sanitizeCss(text, checkUrl);
    remoteBlocked += result.remoteBlocked;
    return result.css;
  };

  const parser = new Parser(
    {
      onopentag(rawName, attribs) {
        const name = rawName.toLowerCase();
        if (dropDepth > 0 || DROPPED_WITH_CONTENT.has(name)) {
          dropDepth++;
          stack.push('dropped');
          if (dropDepth === 1) removed++;
          return;
        }
        // The document's own <html>/<head>/<body> are ours; keep the body's look as a div.
        const element = name === 'body' ? 'div' : name;
        if (!ALLOWED_ELEMENTS.has(element)) {
          stack.push('unwrapped');
          if (name === 'form') removed++;
          return;
        }
        stack.push('kept');
        if (element === 'style') {
          inStyle++;
          out.push('<style>');
          return;
        }
        const attrs: string[] = [];
        const urlAttrs = URL_ATTRIBUTES[name] ?? [];
        for (const [rawAttr, value] of Object.entries(attribs)) {
          const attr = rawAttr.toLowerCase();
          let kept: string | undefined;
          if (urlAttrs.includes(attr)) {
            kept = checkUrl(value, attr === 'href' ? 'link' : 'resource');
          } else if (attr === 'style') {
            kept = css(value);
          } else if (ALLOWED_ATTRIBUTES.has(attr)) {
            kept = value;
          } else {
            if (attr.startsWith('on') || attr === 'srcset' || attr === 'formaction') removed++;
            continue;
          }
          if (kept !== undefined) attrs.push(` ${attr}="${escapeHtml(kept)}"`);
        }
        if (element === 'a') attrs.push(' target="_blank" rel="noopener noreferrer"');
        if (name === 'body') attrs.push(' class="mail-body"');
        out.push(`<${element}${attrs.join('')}>`);
      },
      onclosetag(rawName) {
        const name = rawName.toLowerCase();
        const what = stack.pop();
        if (what === 'dropped') {
          dropDepth--;
          return;
        }
        if (what !== 'kept') return;
        const element = name === 'body' ? 'div' : name;
        if (element === 'style') {
          inStyle--;
          out.push('</style>');
          return;
        }
        if (!VOID_ELEMENTS.has(element)) out.push(`</${element}>`);
      },
      ontext(text) {
        if (dropDepth > 0) return;
        // Style text arrives raw; `<` is the only character that could end the element early.
        if (inStyle > 0) out.push(css(text).replace(/</g, '\\3c '));
        else out.push(escapeHtml(text));
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true, recognizeSelfClosing: true },
  );
  parser.write(input);
  parser.end();
  return { html: out.join(''), remoteBlocked, removed };
}

function decodeCid(text: string): string {
  let id = text;
  try {
    id = decodeURIComponent(text);
  } catch {
    // keep as written
  }
  return id.replace(/^<|>$/g, '').toLowerCase();
}

/** `\75 rl(` is `url(`: decode CSS escapes first, so the checks below see what the browser sees. */
function unescapeCss(text: string): string {
  return text
    .replace(/\\([0-9a-fA-F]{1,6})\s?/g, (_, hex: string) => {
      const cp = Number.parseInt(hex, 16);
      return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
    })
    .replace(/\\(.)/g, '$1');
}

/**
 * Keeps presentational CSS, removes what can load or run: `@import`, `url()` to anything but our data
 * URLs (https kept only with allowRemote), `image-set()` (its strings are URLs), `expression()`,
 * `behavior`, `-moz-binding`. `checkUrl` decides each url() and counts what it removes.
 */
function sanitizeCss(
  text: string,
  checkUrl: (value: string, kind: 'resource') => string | undefined,
): { css: string; remoteBlocked: number } {
  let remoteBlocked = 0;
  // NUL marks the url( we wrote ourselves (it cannot occur in the input after this line).
  let css = unescapeCss(text)
    .replace(/\u0000/g, '')
    .replace(/\/\*[\s\S]*?\*\//g, '');
  css = css.replace(/@import[^;]*;?/gi, () => {
    remoteBlocked++;
    return '';
  });
  css = css.replace(/url\(\s*(['"]?)([\s\S]*?)\1\s*\)/gi, (_m, _q: string, target: string) => {
    // checkUrl counts what it blocks.
    const kept = checkUrl(target, 'resource');
    if (kept === undefined) return 'none';
    return `\u0000("${kept.replace(/["\\\n\r]/g, '')}")`;
  });
  // Whatever still says url( is malformed or nested: neutralise it rather than guess.
  css = css.replace(/url\(/gi, 'invalid-url(').replace(/\u0000\(/g, 'url(');
  css = css.replace(/(?:-webkit-)?image-set\(/gi, 'invalid-image-set(');
  css = css.replace(/expression\(|behavior\s*:|-moz-binding\s*:/gi, 'invalid-');
  return { css, remoteBlocked };
}
