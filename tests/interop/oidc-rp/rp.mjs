// A certified OpenID Connect relying party (panva's openid-client, OpenID Certified) against Writ.
//
// Driven by tests/it/oidc_interop.rs, which starts the server and installs package-lock.json
// with `npm ci`. Reads its configuration as JSON on standard input:
//
//   {"issuer", "client_id", "redirect_uri", "post_logout_redirect_uri", "scope",
//    "username", "password"}
//
// (the dev CA comes through NODE_EXTRA_CA_CERTS). Nothing here is Writ code but the "user": a
// few lines of fetch that fill in Writ's login and consent forms, as a person would in a
// browser. Discovery, the authorization URL with PKCE (S256), state and nonce, the code
// exchange, ID token validation (signature from the JWKS, iss, aud, exp, nonce, at_hash),
// UserInfo, refresh and the end-session URL are the library's. Prints a JSON summary; any failed
// check throws (non-zero exit).

import * as client from 'openid-client';

const TIMEOUT_MS = 10_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function readStdin() {
  let data = '';
  for await (const chunk of process.stdin) data += chunk;
  return JSON.parse(data);
}

/** A browser's cookie jar and form handling, just enough for Writ's pages (no JavaScript). */
class User {
  constructor(origin) {
    this.origin = origin;
    this.cookies = new Map();
  }

  async fetch(url, init = {}) {
    const headers = { ...(init.headers ?? {}) };
    if (this.cookies.size) {
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    const r = await fetch(url, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
    for (const c of r.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1);
      if (!value || attrs.some((a) => a.trim().toLowerCase() === 'max-age=0')) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return r;
  }

  /** Follows redirects within Writ; returns the page, or the URL of a redirect elsewhere. */
  async navigate(url, init) {
    let r = await this.fetch(url, init);
    for (let i = 0; i < 10; i++) {
      if (r.status < 300 || r.status >= 400) return { page: r, html: await r.text() };
      const to = new URL(r.headers.get('location'), url);
      if (to.origin !== this.origin) return { away: to };
      url = to;
      r = await this.fetch(url);
    }
    throw new Error('too many redirects');
  }

  /** Submits the page's form with its hidden fields and `fields`. */
  async submit(html, base, fields) {
    const form = html.match(/<form[^>]*action="([^"]+)"/);
    check(form, `no form in ${html}`);
    const body = new URLSearchParams();
    for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
      body.set(m[1], unescapeHtml(m[2]));
    }
    for (const [k, v] of Object.entries(fields)) body.set(k, v);
    return this.navigate(new URL(form[1], base), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
  }
}

function unescapeHtml(s) {
  return s.replace(/&(#x?[0-9a-fA-F]+|amp|lt|gt|quot|apos);/g, (_, e) => {
    const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (named[e]) return named[e];
    return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

async function main() {
  const cfg = await readStdin();
  const issuer = new URL(cfg.issuer);
  const config = await client.discovery(issuer, cfg.client_id, undefined, client.None());
  const meta = config.serverMetadata();

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: cfg.redirect_uri,
    scope: cfg.scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });

  // The person: sign in, then allow.
  const user = new User(issuer.origin);
  const login = await user.navigate(authUrl);
  check(login.html?.includes('type="password"'), 'a login page');
  const consent = await user.submit(login.html, authUrl, { username: cfg.username, password: cfg.password });
  check(consent.html?.includes('Allow'), 'a consent page');
  const back = await user.submit(consent.html, authUrl, { decision: 'allow' });
  check(back.away, 'sent back to the client');
  check(back.away.href.startsWith(cfg.redirect_uri), `sent to ${back.away}`);

  // The library takes over: state, iss, code exchange with the verifier, ID token checks.
  const tokens = await client.authorizationCodeGrant(config, back.away, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);

  // Single sign-on: a second authorization needs neither password nor consent.
  const again = await user.navigate(
    client.buildAuthorizationUrl(config, {
      redirect_uri: cfg.redirect_uri,
      scope: cfg.scope,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    }),
  );
  check(again.away, 'a second sign-in goes straight back to the client');

  // RP-initiated logout through the library's end-session URL; the user confirms.
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: cfg.post_logout_redirect_uri,
    state: 'bye',
  });
  const confirm = await user.navigate(endSession);
  const out = await user.submit(confirm.html, endSession, {});
  check(out.away, 'sent back after logout');
  let refreshAfterLogout;
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token);
    refreshAfterLogout = 'accepted';
  } catch (e) {
    refreshAfterLogout = e.error ?? e.code ?? String(e);
  }

  console.log(
    JSON.stringify({
      metadata: { issuer: meta.issuer, authorization_endpoint: meta.authorization_endpoint },
      id_token_alg: JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url')).alg,
      claims,
      userinfo,
      scope: tokens.scope,
      refreshed: { has_access_token: !!refreshed.access_token, rotated: refreshed.refresh_token !== tokens.refresh_token },
      after_logout: out.away.href,
      refresh_after_logout: refreshAfterLogout,
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
