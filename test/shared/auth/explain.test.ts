import { describe, expect, it } from 'vitest';
import { OAuthError } from '../../../shared/auth/errors.js';
import { explainAuthFailure } from '../../../shared/auth/explain.js';
import { decodeMicrosoftToken } from '../../../shared/auth/microsoft.js';
import { Pop3Error } from '../../../shared/pop3/errors.js';
import { appMailbox, delegatedMailbox, googleMailbox } from './helpers.js';

const authFailed = (challenge?: unknown) =>
  new Pop3Error('POP3_AUTH_FAILED', 'The server rejected the login (AUTH).', {
    command: 'AUTH XOAUTH2',
    response: '-ERR [AUTH] Authentication failed.',
    ...(challenge === undefined ? {} : { details: { challenge } }),
  });

describe('explainAuthFailure', () => {
  it('token endpoint refusal: says no login was tried, repeats the fix, checks ids for app-only', () => {
    const err = new OAuthError(
      'OAUTH_INVALID_CLIENT',
      "Microsoft rejected the app's credentials (invalid_client). Fix it.",
    );
    const lines = explainAuthFailure(err, appMailbox('https://login.microsoftonline.com'));
    expect(lines[0]).toMatch(/refused to issue an access token, so pophook did not try to log in/);
    expect(lines[1]).toBe(err.message);
    expect(lines[2]).toMatch(/tenantId \(tenant-1\) and clientId \(client-app-1\)/);
  });

  it('Microsoft app-only: decoded challenge, missing role, service principal with the real object id, FullAccess, POP', () => {
    const info = { roles: ['IMAP.AccessAsApp'], objectId: 'sp-object-1', appId: 'client-app-1' };
    const lines = explainAuthFailure(
      authFailed({ status: '401', schemes: 'bearer', scope: 'https://outlook.office365.com/.default' }),
      appMailbox('https://login.microsoftonline.com'),
      info,
    );
    const text = lines.join('\n');
    expect(text).toMatch(/decoded: \{"status":"401","schemes":"bearer"/);
    expect(text).toMatch(/Status 401 means/);
    expect(text).toMatch(/no POP\.AccessAsApp role \(roles: IMAP\.AccessAsApp\)/);
    expect(text).toMatch(/New-ServicePrincipal -AppId client-app-1 -ObjectId sp-object-1/);
    expect(text).toMatch(
      /Add-MailboxPermission -Identity billing@contoso\.example -User sp-object-1 -AccessRights FullAccess/,
    );
    expect(text).toMatch(/Set-CASMailbox -Identity billing@contoso\.example -PopEnabled \$true/);
  });

  it('Microsoft app-only without token info: placeholders, and no role complaint', () => {
    const text = explainAuthFailure(authFailed(), appMailbox('https://login.microsoftonline.com')).join('\n');
    expect(text).not.toMatch(/role/);
    expect(text).toMatch(/-ObjectId <object id of the app under Enterprise applications>/);
    expect(text).toMatch(/-ERR \[AUTH\] Authentication failed\./);
  });

  it('Microsoft delegated: wrong scope and a different signed-in user', () => {
    const text = explainAuthFailure(authFailed(), delegatedMailbox('https://login.microsoftonline.com'), {
      scopes: ['IMAP.AccessAsUser.All'],
      user: 'mallory@contoso.example',
    }).join('\n');
    expect(text).toMatch(/lacks the POP\.AccessAsUser\.All scope/);
    expect(text).toMatch(/belongs to mallory@contoso\.example, but "user" is alice@contoso\.example/);
    expect(text).toMatch(/pophook auth m365-user/);
  });

  it('Gmail: POP setting, Workspace admin switch, scope', () => {
    const text = explainAuthFailure(
      authFailed({ status: '400', schemes: 'Bearer', scope: 'https://mail.google.com/' }),
      googleMailbox('https://oauth2.googleapis.com'),
      { scopes: ['https://www.googleapis.com/auth/gmail.readonly'] },
    ).join('\n');
    expect(text).toMatch(/Status 400/);
    expect(text).toMatch(/lacks the scope https:\/\/mail\.google\.com\//);
    expect(text).toMatch(/Forwarding and POP\/IMAP/);
    expect(text).toMatch(/Admin console/);
  });

  it('other errors pass their message through', () => {
    expect(explainAuthFailure(new Error('boom'), googleMailbox('https://x.example'))).toEqual(['boom']);
  });
});

describe('decodeMicrosoftToken', () => {
  it('reads roles, scopes and ids from a JWT payload; undefined for opaque tokens', () => {
    const payload = Buffer.from(
      JSON.stringify({
        aud: 'https://outlook.office365.com',
        roles: ['POP.AccessAsApp'],
        oid: 'o1',
        tid: 't1',
        appid: 'a1',
      }),
    ).toString('base64url');
    expect(decodeMicrosoftToken(`eyJ0eXAiOiJKV1QifQ.${payload}.sig`)).toEqual({
      audience: 'https://outlook.office365.com',
      roles: ['POP.AccessAsApp'],
      objectId: 'o1',
      tenantId: 't1',
      appId: 'a1',
    });
    expect(decodeMicrosoftToken('ya29.opaque-google-token')).toBeUndefined();
  });
});
