import { describe, expect, it } from 'vitest';
import { sanitizeMailHtml } from '../../shared/console/mail-html.js';

const clean = (input: string, allowRemote = false, cid?: Map<string, string>) =>
  sanitizeMailHtml(input, { allowRemote, ...(cid ? { cid } : {}) });

describe('sanitizeMailHtml', () => {
  it('keeps ordinary mail formatting', () => {
    const out = clean(
      '<html><head><title>t</title></head><body bgcolor="#fff"><table width="600" cellpadding="4"><tr><td style="color:red;font-weight:bold">Hi &amp; welcome</td></tr></table><p>Two<br>lines</p></body></html>',
    );
    expect(out.html).toBe(
      '<div bgcolor="#fff" class="mail-body"><table width="600" cellpadding="4"><tr><td style="color:red;font-weight:bold">Hi &amp; welcome</td></tr></table><p>Two<br>lines</p></div>',
    );
    expect(out.remoteBlocked).toBe(0);
  });

  it('drops scripts, handlers, meta refresh, base, forms, frames, objects and SVG', () => {
    const out = clean(
      [
        '<script>window.x=1</script><SCRIPT src=//evil.test/a.js></SCRIPT>',
        '<img src="data:image/png;base64,AAAA" onerror="alert(1)" ONLOAD=alert(2)>',
        '<meta http-equiv="refresh" content="0;url=https://evil.test/">',
        '<base href="https://evil.test/">',
        '<form action="https://evil.test/"><input name=a value=b><button formaction=x>Go</button>kept text</form>',
        '<iframe src="https://evil.test/"></iframe><object data="x.swf"></object><embed src=x>',
        '<svg onload=alert(3)><script>alert(4)</script></svg>',
        '<math><mi xlink:href="javascript:alert(5)">m</mi></math>',
        '<noscript><img src=x onerror=alert(6)></noscript>',
        '<template><script>alert(7)</script></template>',
        '<link rel=stylesheet href="https://evil.test/s.css">',
        '<div onclick="alert(8)" onmouseover=alert(9)>hover</div>',
      ].join(''),
    );
    expect(out.html).not.toMatch(
      /script|onerror|onload|onclick|onmouseover|http-equiv|<base|<form|<input|<button|iframe|object|embed|svg|math|noscript|template|<link|evil\.test|alert/i,
    );
    expect(out.html).toContain('kept text');
    expect(out.html).toContain('<div>hover</div>');
    expect(out.html).toContain('<img src="data:image/png;base64,AAAA">');
  });

  it('allows only safe link schemes, opened without opener or referrer', () => {
    const out = clean(
      '<a href="javascript:alert(1)">a</a><a href=" java\tscript:alert(2)">b</a><a href="vbscript:x">c</a>' +
        '<a href="data:text/html,<script>alert(3)</script>">d</a><a href="https://ok.test/x?y=1&amp;z=2">e</a>' +
        '<a href="mailto:a@b.test">f</a><a href="/relative">g</a><a href="#top">h</a>',
    );
    expect(out.html).not.toMatch(/javascript|vbscript|data:text|relative/i);
    expect(out.html).toContain(
      '<a href="https://ok.test/x?y=1&amp;z=2" target="_blank" rel="noopener noreferrer">e</a>',
    );
    expect(out.html).toContain('href="mailto:a@b.test"');
    expect(out.html).toContain('href="#top"');
  });

  it('blocks remote images, backgrounds and CSS urls unless asked, and counts them', () => {
    const input =
      '<img src="https://track.test/p.gif" width=1><img src="http://track.test/q.gif"><img srcset="https://track.test/r.gif 1x">' +
      '<table background="https://track.test/bg.png"><tr><td>x</td></tr></table>' +
      '<div style="background:url(https://track.test/css.png) no-repeat; color: blue">y</div>' +
      '<style>@import url("https://track.test/i.css"); body { background-image: url(\'https://track.test/b.png\') } .a{background:u\\72l(https://track.test/esc.png)} .b{background-image:image-set("https://track.test/set.png" 1x)}</style>';
    const blocked = clean(input);
    expect(blocked.html).not.toContain('track.test/p.gif');
    expect(blocked.html).not.toMatch(/url\((?!"data:)/);
    expect(blocked.html).not.toMatch(/https?:\/\/track\.test\/(?!set\.png)/);
    expect(blocked.html).not.toMatch(/[^-]image-set\(/);
    expect(blocked.html).toContain('color: blue');
    expect(blocked.remoteBlocked).toBeGreaterThanOrEqual(7);

    const remote = clean(input, true);
    expect(remote.html).toContain('src="https://track.test/p.gif"');
    expect(remote.html).not.toContain('http://track.test/q.gif'); // plain http stays off
    expect(remote.html).toContain('url(&quot;https://track.test/css.png&quot;)');
    expect(remote.html).toContain('url("https://track.test/b.png")');
    expect(remote.remoteBlocked).toBeGreaterThanOrEqual(1);
  });

  it('turns cid: references into data: URLs of the inline parts', () => {
    const cid = new Map([['logo@x.test', 'data:image/png;base64,iVBOR']]);
    const out = clean(
      '<img src="cid:logo@x.test" alt=logo><img src="cid:missing@x.test" alt=gone>',
      false,
      cid,
    );
    expect(out.html).toBe('<img src="data:image/png;base64,iVBOR" alt="logo"><img alt="gone">');
  });

  it('never lets style text close its element or text become markup', () => {
    const out = clean(
      '<style>p{color:red}</style ><p>&lt;script&gt;alert(1)&lt;/script&gt;</p><style>a{}</style><img src=x>',
    );
    expect(out.html).toContain('<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>');
    const weird = clean('<style>x{content:"\\3c /style><script>alert(1)</script>"}</style>');
    expect(weird.html).not.toMatch(/<\/style><script/i);
    expect(weird.html.match(/<\/style>/g)).toHaveLength(1);
  });

  it('re-serialises broken markup into balanced, escaped output', () => {
    const out = clean(
      '<p><b>bold<i>both</p></b>tail<div title="a&quot;b\'c<d">x</div></unknown><xmp><img src=x onerror=alert(1)></xmp>',
    );
    expect(out.html).not.toMatch(/onerror/);
    expect(out.html).toContain('title="a&quot;b&#39;c&lt;d"');
    expect(out.html).toContain('tail');
  });
});
