// node oidc-provider, as writ-bench codeflow runs it beside Writ: one client, the authorization
// code flow with PKCE, HTTPS on loopback, the in-memory adapter. It does the work Writ does per
// flow: an ID token and an RFC 9068 JWT access token for the resource server `orders` (resource
// indicators, the granted resource used by default), both signed with Ed25519. Sign-in and consent are answered at once for the one account, so a load
// generator can open a session by following redirects; after that, authorize → code → token
// needs no interaction, as with a signed-in Writ session.
//
// Environment: PORT, CERT and KEY (PEM files), CLIENT_SECRET. Prints `listening` when ready.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `https://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('ed25519');
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'EdDSA', use: 'sig', kid: 'bench' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'web',
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: ['https://rp.example/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'EdDSA',
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  pkce: { required: () => true },
  scopes: ['openid', 'orders.read'],
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:writ:orders',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'orders.read',
        audience: 'orders',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'EdDSA' } },
      }),
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});

// The interactions, answered without a page: the account signs in, then consents to what the
// client asked (as node-oidc-provider's own example does on its consent form).
async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    return provider.interactionFinished(req, res, { login: { accountId: 'ada' } }, {
      mergeWithLastSubmission: false,
    });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } }, {
    mergeWithLastSubmission: true,
  });
}

const callback = provider.callback();
const server = https.createServer(
  { cert: readFileSync(process.env.CERT), key: readFileSync(process.env.KEY) },
  (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interact(req, res).catch((e) => {
        res.statusCode = 500;
        res.end(String(e));
      });
      return;
    }
    callback(req, res);
  },
);
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => console.log('listening'));
