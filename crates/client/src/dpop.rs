//! DPoP on the calling side (RFC 9449, over gRPC as `docs/dpop-grpc.md` says): a key the
//! client's tokens are bound to, and a fresh proof by it on every call.

use std::sync::Arc;

use http::HeaderValue;
use tonic::Status;
use writ_token::{Algorithm, ProofClaimsOut, SigningKey};

/// A client's DPoP key: tokens fetched with it are bound to it (`cnf.jkt`), and useless to
/// whoever steals them without it. Cheap to clone. Keep it in memory: a key generated at start
/// and never written anywhere is the safest kind (a restart fetches new tokens).
#[derive(Clone)]
pub struct DpopKey {
    key: Arc<SigningKey>,
    jkt: Arc<str>,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new Ed25519 key (the cheapest proofs to make and to check).
    pub fn generate() -> Result<DpopKey, Status> {
        let key = SigningKey::generate(Algorithm::EdDSA, "dpop")
            .map_err(|e| Status::internal(format!("generating a DPoP key: {e}")))?;
        DpopKey::new(key)
    }

    /// `key` as a DPoP key: Ed25519 or P-256 (the algorithms servers take proofs in).
    pub fn new(key: SigningKey) -> Result<DpopKey, Status> {
        if !writ_token::DPOP_ALGORITHMS.contains(&key.alg()) {
            return Err(Status::invalid_argument(
                "a DPoP key is Ed25519 or P-256 (EdDSA or ES256)",
            ));
        }
        let jkt = writ_token::key_thumbprint(&key)
            .ok_or_else(|| Status::internal("the DPoP key has no thumbprint"))?;
        Ok(DpopKey {
            key: Arc::new(key),
            jkt: Arc::from(jkt),
        })
    }

    /// The key's RFC 7638 thumbprint: what bound tokens carry in `cnf.jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.jkt
    }

    /// A proof for one gRPC call to `htu` (a fresh `jti`, `iat` now), with `ath` when it goes
    /// with `access_token`, as a header value.
    pub fn proof(
        &self,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<HeaderValue, Status> {
        let proof = writ_token::sign_proof(
            &self.key,
            &ProofClaimsOut {
                htm: writ_token::GRPC_HTM,
                htu,
                iat: writ_token::system_clock().now(),
                access_token,
                nonce,
            },
        );
        let mut value = HeaderValue::try_from(proof)
            .map_err(|_| Status::internal("the DPoP proof is not a header value"))?;
        // Each proof is new: never worth a place in the HPACK table.
        value.set_sensitive(true);
        Ok(value)
    }
}

/// An origin (`https://host:port`) checked to be one: a scheme and an authority, nothing else.
pub(crate) fn origin(url: &str) -> Result<String, Status> {
    let bad = || Status::invalid_argument(format!("{url} is not an origin (https://host:port)"));
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(bad());
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad());
    }
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_names_the_call_and_the_token_and_verifies_under_the_keys_thumbprint() {
        let key = DpopKey::generate().unwrap();
        let htu = "https://orders.internal:7443/shop.v1.Orders/Place";
        let proof = key.proof(htu, Some("the-token"), None).unwrap();
        let rules = writ_token::ProofRules {
            htm: "POST",
            htu,
            now: writ_token::system_clock().now(),
            max_age: writ_token::DPOP_MAX_AGE,
            leeway: 30,
            access_token: Some("the-token"),
            nonce: None,
        };
        let verified = writ_token::verify_proof(proof.to_str().unwrap(), &rules).unwrap();
        assert_eq!(verified.jkt, key.thumbprint());
        // Each proof is new.
        let again = key.proof(htu, Some("the-token"), None).unwrap();
        assert_ne!(proof, again);
        let rsa_free = SigningKey::generate(Algorithm::ES256, "p").unwrap();
        assert!(DpopKey::new(rsa_free).is_ok());
    }

    #[test]
    fn an_origin_is_a_scheme_and_an_authority() {
        assert_eq!(origin("https://authz:7400").unwrap(), "https://authz:7400");
        assert_eq!(origin("https://authz:7400/").unwrap(), "https://authz:7400");
        assert!(origin("https://authz:7400/path").is_err());
        assert!(origin("authz:7400").is_err());
        assert!(origin("/path").is_err());
        assert!(origin("https://authz/?q").is_err());
    }
}
