#!/usr/bin/env python3
"""Off-the-shelf OAuth 2.0 and JWT clients against Writ's HTTP facade.

Driven by tests/it/interop.rs, which starts the server and installs requirements.txt into a venv.
Reads its configuration as JSON on standard input:

    {"mode": "issue" | "after-rotation", "issuer": ..., "ca": <path to the dev CA PEM>,
     "client_id": ..., "client_secret": ..., "scope": ..., "audience": ...,
     "earlier_token": <after-rotation: a token signed before the rotation>}

    {"mode": "private-key-jwt", "issuer": ..., "ca": ..., "client_id": ..., "alg": "EdDSA" | "ES256",
     "private_key": <PKCS#8 PEM>, "scope": ..., "audience": ...}

    {"mode": "jwt-bearer", "issuer": ..., "ca": ..., "client_id": ..., "scope": ..., "audience": ...,
     "workload_issuer": ..., "workload_audience": ..., "subject": ..., "kid": ...,
     "private_key": <the workload issuer's RSA PEM>}

    {"mode": "dpop", "issuer": ..., "ca": ..., "client_id": ..., "client_secret": ..., "scope": ...}

Nothing here is Writ code: discovery with requests, tokens with authlib's OAuth2Session
(client_secret_basic, client_secret_post, and private_key_jwt with authlib's own assertions),
DPoP-bound tokens with requests-oauth2client (its keys, proofs and nonce handling),
verification with PyJWT's PyJWKClient + jwt.decode.
Prints a JSON summary on standard output; any failed check raises (non-zero exit, traceback).
"""

import json
import ssl
import sys

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session

ALGORITHMS = ["EdDSA", "ES256"]
REQUIRED = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id"]
TIMEOUT = 10


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def discover(cfg):
    """RFC 8414 discovery with plain requests, trusting only the dev CA."""
    http = requests.Session()
    http.trust_env = False  # never a proxy for loopback
    http.verify = cfg["ca"]
    r = http.get(cfg["issuer"] + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    r.raise_for_status()
    meta = r.json()
    check(meta["issuer"] == cfg["issuer"], f"issuer {meta['issuer']!r}")
    for method in ("client_secret_basic", "client_secret_post"):
        check(method in meta["token_endpoint_auth_methods_supported"], method)
    for alg in ALGORITHMS:
        check(alg in meta["access_token_signing_alg_values_supported"], alg)
    return meta


def session(cfg, method):
    s = OAuth2Session(
        cfg["client_id"],
        cfg["client_secret"],
        token_endpoint_auth_method=method,
        scope=cfg["scope"],
    )
    s.trust_env = False
    s.verify = cfg["ca"]
    return s


def fetch(cfg, meta, method):
    token = session(cfg, method).fetch_token(
        meta["token_endpoint"], grant_type="client_credentials", timeout=TIMEOUT
    )
    check(token["token_type"] == "Bearer", token)
    check(token["scope"] == cfg["scope"], token)
    return token


def verify(cfg, jwks, token):
    """Verifies an access token the way a resource server using PyJWT would."""
    header = jwt.get_unverified_header(token)
    check(header.get("typ") == "at+jwt", f"typ {header.get('typ')!r}")
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key,
        algorithms=ALGORITHMS,
        audience=cfg["audience"],
        issuer=cfg["issuer"],
        options={"require": REQUIRED},
        leeway=0,
    )
    return {"header": header, "claims": claims}


def refusals(cfg, jwks, token):
    """PyJWT really checks: another audience, another issuer and a bad signature all fail."""
    key = jwks.get_signing_key_from_jwt(token)
    head, body, sig = token.split(".")
    tampered = ".".join([head, body, ("A" if sig[0] != "A" else "B") + sig[1:]])
    good = {"token": token, "algorithms": ALGORITHMS, "audience": cfg["audience"], "issuer": cfg["issuer"]}
    cases = {
        "audience": {**good, "audience": "another"},
        "issuer": {**good, "issuer": "https://evil.example"},
        "signature": {**good, "token": tampered},
        "algorithm": {**good, "algorithms": ["RS256"]},
    }
    out = {}
    for name, case in cases.items():
        try:
            jwt.decode(case.pop("token"), key, **case)
            out[name] = "accepted"
        except jwt.PyJWTError as e:
            out[name] = type(e).__name__
    return out


def jwks_client(cfg, meta):
    context = ssl.create_default_context(cafile=cfg["ca"])
    return jwt.PyJWKClient(meta["jwks_uri"], ssl_context=context, timeout=TIMEOUT)


def issue(cfg):
    meta = discover(cfg)
    jwks = jwks_client(cfg, meta)
    out = {"metadata": meta, "tokens": {}}
    for method in ("client_secret_basic", "client_secret_post"):
        token = fetch(cfg, meta, method)
        out["tokens"][method] = {
            "access_token": token["access_token"],
            "expires_in": token["expires_in"],
            **verify(cfg, jwks, token["access_token"]),
        }
    basic = out["tokens"]["client_secret_basic"]["access_token"]
    out["refusals"] = refusals(cfg, jwks, basic)

    # RFC 7662 and RFC 7009 through authlib: revoke the client_secret_post token.
    s = session(cfg, "client_secret_basic")
    post = out["tokens"]["client_secret_post"]["access_token"]
    before = s.introspect_token(meta["introspection_endpoint"], token=post, timeout=TIMEOUT)
    before.raise_for_status()
    revoked = s.revoke_token(meta["revocation_endpoint"], token=post, timeout=TIMEOUT)
    revoked.raise_for_status()
    after = s.introspect_token(meta["introspection_endpoint"], token=post, timeout=TIMEOUT)
    after.raise_for_status()
    out["introspection"] = {"before_revoke": before.json(), "after_revoke": after.json()}
    return out


def after_rotation(cfg):
    meta = discover(cfg)
    jwks = jwks_client(cfg, meta)
    token = fetch(cfg, meta, "client_secret_basic")
    return {
        # Every published key, as PyJWT parsed it (it skips keys it cannot use).
        "jwks_algs": sorted(k.algorithm_name for k in jwks.get_jwk_set().keys),
        "new": {"access_token": token["access_token"], **verify(cfg, jwks, token["access_token"])},
        "earlier": verify(cfg, jwks, cfg["earlier_token"]),
    }


def private_key_jwt(cfg):
    """RFC 7523 client authentication, the assertions signed by authlib (joserfc keys from the
    PEM, no kid: the client registered one key), then the same assertion twice, and one for
    another server."""
    from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
    from joserfc.jwk import ECKey, OKPKey

    meta = discover(cfg)
    check("private_key_jwt" in meta["token_endpoint_auth_methods_supported"], meta)
    check(cfg["alg"] in meta["token_endpoint_auth_signing_alg_values_supported"], meta)
    key = (OKPKey if cfg["alg"] == "EdDSA" else ECKey).import_key(cfg["private_key"])
    endpoint = meta["token_endpoint"]
    jwks = jwks_client(cfg, meta)
    out = {"tokens": []}
    for _ in range(2):
        s = OAuth2Session(cfg["client_id"], key, token_endpoint_auth_method="private_key_jwt", scope=cfg["scope"])
        s.register_client_auth_method(PrivateKeyJWT(endpoint, alg=cfg["alg"]))
        s.trust_env = False
        s.verify = cfg["ca"]
        token = s.fetch_token(endpoint, grant_type="client_credentials", timeout=TIMEOUT)
        out["tokens"].append({"access_token": token["access_token"], **verify(cfg, jwks, token["access_token"])})

    http = requests.Session()
    http.trust_env = False
    http.verify = cfg["ca"]

    def post(assertion):
        r = http.post(endpoint, data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }, timeout=TIMEOUT)
        return {"status": r.status_code, "body": r.json()}

    once = private_key_jwt_sign(key, cfg["client_id"], endpoint, alg=cfg["alg"])
    out["first"] = post(once)
    out["replayed"] = post(once)
    out["elsewhere"] = post(private_key_jwt_sign(key, cfg["client_id"], "https://elsewhere.example/token", alg=cfg["alg"]))
    return out


def jwt_bearer(cfg):
    """RFC 7523 section 2.1 by authlib's AssertionSession: authlib signs the workload token
    itself (RS256 with the made-up cluster's key and kid, a jti, an hour of life) and sends the
    JWT-bearer grant without client authentication; PyJWT verifies what Writ issued. Then one
    assertion twice (the issuer is single-use) and one for another audience, by hand."""
    from authlib.common.encoding import to_native
    from authlib.integrations.requests_client import AssertionSession
    from authlib.oauth2.rfc7523 import JWTBearerGrant

    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    meta = discover(cfg)
    check(grant in meta["grant_types_supported"], meta)
    endpoint = meta["token_endpoint"]
    jwks = jwks_client(cfg, meta)
    signing = {"key": cfg["private_key"], "alg": "RS256", "header": {"kid": cfg["kid"]}}
    out = {"tokens": []}
    for _ in range(2):
        s = AssertionSession(
            endpoint,
            issuer=cfg["workload_issuer"],
            subject=cfg["subject"],
            audience=cfg["workload_audience"],
            scope=cfg["scope"],
            client_id=cfg["client_id"],
            **signing,
        )
        s.trust_env = False
        s.verify = cfg["ca"]
        token = s.refresh_token()
        check("refresh_token" not in token, token)
        out["tokens"].append({"access_token": token["access_token"], **verify(cfg, jwks, token["access_token"])})

    http = requests.Session()
    http.trust_env = False
    http.verify = cfg["ca"]

    def post(assertion):
        r = http.post(endpoint, data={"grant_type": grant, "assertion": assertion}, timeout=TIMEOUT)
        return {"status": r.status_code, "body": r.json()}

    def sign(audience):
        return to_native(JWTBearerGrant.sign(
            issuer=cfg["workload_issuer"], subject=cfg["subject"], audience=audience, **signing
        ))

    once = sign(cfg["workload_audience"])
    out["first"] = post(once)
    out["replayed"] = post(once)
    out["elsewhere"] = post(sign("https://elsewhere.example"))
    return out


def dpop(cfg):
    """DPoP (RFC 9449) with requests-oauth2client: its own ES256 key and proofs, nonces if asked."""
    from requests_oauth2client import DPoPKey, OAuth2Client

    meta = discover(cfg)
    check("ES256" in meta["dpop_signing_alg_values_supported"], "ES256 proofs")
    http = requests.Session()
    http.trust_env = False
    http.verify = cfg["ca"]
    client = OAuth2Client(
        token_endpoint=meta["token_endpoint"],
        client_id=cfg["client_id"],
        client_secret=cfg["client_secret"],
        session=http,
    )
    out = {"tokens": []}
    for alg in ("ES256", "EdDSA"):
        key = DPoPKey.generate(alg=alg)
        token = client.client_credentials(scope=cfg["scope"], dpop_key=key)
        check(token.token_type == "DPoP", f"token_type {token.token_type!r}")
        out["tokens"].append({"access_token": str(token.access_token), "jkt": key.dpop_jkt})
    return out


def main():
    cfg = json.load(sys.stdin)
    modes = {
        "issue": issue,
        "after-rotation": after_rotation,
        "private-key-jwt": private_key_jwt,
        "jwt-bearer": jwt_bearer,
        "dpop": dpop,
    }
    print(json.dumps(modes[cfg["mode"]](cfg), sort_keys=True))


if __name__ == "__main__":
    main()
