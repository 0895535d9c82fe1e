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
//! query on at most one predicate ([`check_attenuation_blocks`]).

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
    biscuit
        .append(block)
        .and_then(|b| b.to_base64())
        .map_err(|_| TokenError::InvalidAttenuation("could not append the block"))
}

/// Refuses a Biscuit whose blocks after the authority block hold anything but checks, or a check
/// query that joins more than one predicate.
///
/// Anyone holding a token can append a block, and biscuit-auth enforces its run limits only
/// between two rule iterations and between two check queries: a single rule or query joining
/// several predicates runs for as long as its cross product takes (a second for four predicates
/// over thirty facts, hours for seven), whatever the time limit says. Writ's attenuation needs
/// no more than one predicate per query (see the vocabulary above), which keeps every query
/// linear in the authority's and the request's facts; facts or rules in a later block would
/// grant nothing anyway, because Writ reads claims from the authority block alone.
/// [`crate::TokenVerifier`] applies this to every Biscuit once its signatures hold, before any
/// Datalog runs.
pub fn check_attenuation_blocks(biscuit: &Biscuit) -> Result<(), TokenError> {
    const REFUSED: TokenError =
        TokenError::InvalidAttenuation("a block may only add checks on one predicate each");
    if biscuit.block_count() < 2 {
        return Ok(());
    }
    // biscuit-auth exposes a block's Datalog only as text, which does not escape its strings
    // (so it cannot be read back faithfully), or as the protobuf it verified. This walks the
    // latter, re-encoded by biscuit-auth itself (schema.proto): Biscuit.blocks = 3,
    // SignedBlock.block = 1, Block.facts = 4, .rules = 5, .checks = 6, Check.queries = 1,
    // Rule.body = 2. Repeated fields are all counted, as prost appends them when decoding.
    let token = biscuit
        .to_vec()
        .map_err(|_| TokenError::Malformed("not a Biscuit"))?;
    for signed in proto_fields(&token, 3)? {
        for block in proto_fields(signed, 1)? {
            if !proto_fields(block, 4)?.is_empty() || !proto_fields(block, 5)?.is_empty() {
                return Err(REFUSED);
            }
            for check in proto_fields(block, 6)? {
                for query in proto_fields(check, 1)? {
                    if proto_fields(query, 2)?.len() > 1 {
                        return Err(REFUSED);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The payloads of the length-delimited fields numbered `number` in the protobuf `message`.
fn proto_fields(mut message: &[u8], number: u64) -> Result<Vec<&[u8]>, TokenError> {
    const MALFORMED: TokenError = TokenError::Malformed("not a Biscuit");
    fn varint(buf: &mut &[u8]) -> Result<u64, TokenError> {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = buf.split_first().ok_or(MALFORMED)?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(MALFORMED)
    }
    let mut found = Vec::new();
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let len = match key & 7 {
            0 => {
                varint(&mut message)?;
                continue;
            }
            1 => 8,
            2 => usize::try_from(varint(&mut message)?).map_err(|_| MALFORMED)?,
            5 => 4,
            _ => return Err(MALFORMED),
        };
        if len > message.len() {
            return Err(MALFORMED);
        }
        let (value, rest) = message.split_at(len);
        if key >> 3 == number && key & 7 == 2 {
            found.push(value);
        }
        message = rest;
    }
    Ok(found)
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
