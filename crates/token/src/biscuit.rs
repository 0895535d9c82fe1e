//! Biscuit access tokens: minting, offline attenuation and the Datalog vocabulary they share.
//!
//! The authority block carries the same facts as a JWT access token:
//!
//! ```text
//! issuer("https://as.example");  subject("alice");  client("orders");
//! audience("inventory");  scope("inventory.read");  token_id("...");  grant_id("...");
//! issued_at(2026-11-24T10:00:00Z);  expires_at(2026-11-24T10:05:00Z);
//! actor(1, "svc-a", "client-a");   // delegation chain, 1 = the latest actor
//! check if time($t), $t <= 2026-11-24T10:05:00Z;
//! ```
//!
//! A verifier provides the request as facts: `time($now)` always; `service($name)`,
//! `method($grpc_path)` and one `required_scope($s)` per scope the method needs when it
//! authorizes a call. Attenuation blocks written by [`attenuate`] narrow with checks that are
//! vacuous when the request says nothing about what they narrow:
//!
//! ```text
//! reject if required_scope($s), !{allowed_scopes}.contains($s);
//! reject if method($m), !{allowed_methods}.contains($m);
//! reject if service($x), !{allowed_services}.contains($x);
//! check if time($t), $t <= {expires_at};
//! ```
//!
//! A verifier accepts nothing more in a block after the authority block: checks only, each
//! query on at most one predicate, linear in cost ([`crate::inspect_biscuit`]).

use std::collections::{BTreeSet, HashMap};

use biscuit_auth::builder::{Fact, Term, fact, int, string};
use biscuit_auth::{Biscuit, BlockBuilder, UnverifiedBiscuit};

use crate::claims::{AccessClaims, Actor};
use crate::error::TokenError;
use crate::keys::BiscuitRootKey;

/// What a Biscuit holder may narrow offline. `None` leaves that dimension as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attenuation {
    /// The scopes the narrowed token may still use.
    pub scopes: Option<Vec<String>>,
    /// The gRPC methods (`/package.Service/Method`) it may still call.
    pub methods: Option<Vec<String>>,
    /// The services (audiences) it may still be presented to.
    pub services: Option<Vec<String>>,
    /// A new, earlier expiry (NumericDate).
    pub expires_at: Option<i64>,
}

/// Longest Biscuit accepted, in bytes of base64.
pub const MAX_BISCUIT_LEN: usize = 16 * 1024;

pub(crate) fn date(secs: i64) -> Term {
    Term::Date(secs.max(0) as u64)
}

fn string_set(items: &[String]) -> Term {
    Term::Set(items.iter().map(|s| string(s)).collect::<BTreeSet<_>>())
}

/// Mints a Biscuit carrying `claims`, signed by `root`.
pub fn mint_biscuit(root: &BiscuitRootKey, claims: &AccessClaims) -> Result<String, TokenError> {
    // Biscuit's error text can quote token contents: only the category is kept.
    let build = |_| TokenError::Build("biscuit");
    let gid = claims
        .gid
        .as_deref()
        .ok_or(TokenError::Build("a Biscuit needs a grant id"))?;
    let mut facts: Vec<Fact> = vec![
        fact("issuer", &[string(&claims.iss)]),
        fact("subject", &[string(&claims.sub)]),
        fact("client", &[string(&claims.client_id)]),
        fact("token_id", &[string(&claims.jti)]),
        fact("grant_id", &[string(gid)]),
        fact("issued_at", &[date(claims.iat)]),
        fact("expires_at", &[date(claims.exp)]),
    ];
    facts.extend(claims.aud.iter().map(|a| fact("audience", &[string(a)])));
    facts.extend(
        claims
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| fact("scope", &[string(s)])),
    );
    let mut actor = claims.act.as_ref();
    let mut depth = 1;
    while let Some(a) = actor {
        facts.push(fact(
            "actor",
            &[
                int(depth),
                string(&a.sub),
                string(a.client_id.as_deref().unwrap_or("")),
            ],
        ));
        actor = a.act.as_deref();
        depth += 1;
    }

    let mut builder = Biscuit::builder().root_key_id(root.id());
    for f in facts {
        builder = builder.fact(f).map_err(build)?;
    }
    let builder = builder
        .code_with_params(
            "check if time($t), $t <= {exp}",
            HashMap::from([("exp".to_owned(), date(claims.exp))]),
            HashMap::new(),
        )
        .map_err(build)?;
    builder
        .build(root.keypair())
        .and_then(|b| b.to_base64())
        .map_err(build)
}

/// Appends a block to `token` that narrows it as `attenuation` says. Needs no key: any holder
/// can do it offline, and nobody can undo it.
pub fn attenuate(token: &str, attenuation: &Attenuation) -> Result<String, TokenError> {
    if attenuation == &Attenuation::default() {
        return Err(TokenError::InvalidAttenuation("nothing to narrow"));
    }
    if token.len() > MAX_BISCUIT_LEN {
        return Err(TokenError::TooLarge);
    }
    let biscuit = UnverifiedBiscuit::from_base64(token.trim())
        .map_err(|_| TokenError::Malformed("not a Biscuit"))?;
    let mut params = HashMap::new();
    let mut code = String::new();
    if let Some(scopes) = &attenuation.scopes {
        code.push_str("reject if required_scope($s), !{scopes}.contains($s);\n");
        params.insert("scopes".to_owned(), string_set(scopes));
    }
    if let Some(methods) = &attenuation.methods {
        code.push_str("reject if method($m), !{methods}.contains($m);\n");
        params.insert("methods".to_owned(), string_set(methods));
    }
    if let Some(services) = &attenuation.services {
        code.push_str("reject if service($x), !{services}.contains($x);\n");
        params.insert("services".to_owned(), string_set(services));
    }
    if let Some(exp) = attenuation.expires_at {
        code.push_str("check if time($t), $t <= {exp};\n");
        params.insert("exp".to_owned(), date(exp));
    }
    let block = BlockBuilder::new()
        .code_with_params(&code, params, HashMap::new())
        .map_err(|_| TokenError::InvalidAttenuation("could not build the block"))?;
    let narrowed = biscuit
        .append(block)
        .and_then(|b| b.to_vec())
        .map_err(|_| TokenError::InvalidAttenuation("could not append the block"))?;
    // What a verifier would refuse (too many scopes in one set, say) is refused here already.
    crate::holder::inspect_biscuit(&narrowed, usize::MAX)?;
    use base64::Engine;
    Ok(base64::engine::general_purpose::URL_SAFE.encode(narrowed))
}

/// A Biscuit's bytes from its base64url form (padded or not, as biscuit-auth writes and reads it).
pub(crate) fn decode_biscuit_base64(token: &str) -> Result<Vec<u8>, TokenError> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    if token.is_empty() {
        return Err(TokenError::Malformed("a Biscuit is base64url"));
    }
    URL_SAFE_ANY_PADDING
        .decode(token)
        .map_err(|_| TokenError::Malformed("a Biscuit is base64url"))
}

/// Rebuilds the delegation chain from `actor(depth, sub, client)` facts.
pub(crate) fn actor_chain(mut facts: Vec<(i64, String, String)>) -> Option<Actor> {
    facts.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut chain: Option<Actor> = None;
    for (_, sub, client) in facts {
        chain = Some(Actor {
            sub,
            client_id: (!client.is_empty()).then_some(client),
            act: chain.map(Box::new),
        });
    }
    chain
}
