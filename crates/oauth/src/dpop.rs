//! DPoP (RFC 9449) at the token endpoint: proofs verified (`writ_token::verify_proof`), their
//! `jti`s remembered in bounded memory, server nonces, and the key a token is bound to.
//!
//! A proof is checked before anything else (statelessly: form, signature, method, URI, age,
//! nonce), and its `jti` spent only when tokens are about to be minted, after the client
//! authenticated and the grant decided: a caller who cannot get tokens cannot fill the memory
//! of proofs either. A proof is good for `DPOP_MAX_AGE` seconds (and the leeway) after its
//! `iat`; its `jti` is remembered for that long, in two generations of at most
//! [`MAX_REMEMBERED`] keyed 128-bit hashes each (of the key's thumbprint and the `jti`; about
//! 36 MiB a full generation), so memory stays bounded whatever the load: a full generation
//! refuses new proofs (`temporarily_unavailable`) rather than forget one. Each process
//! remembers its own, and forgets at a restart: a proof replayed at another replica (or after
//! a restart) within its two minutes gets tokens bound to the same key, useless without it; a
//! public client's refresh token replayed that way is reuse, which revokes the family.
//!
//! Nonces are stateless: a 5-minute window's number and an HMAC of it under a key derived from
//! the key-encryption key (every replica holds it), good for that window and the next (and, a
//! leeway before it starts, the one after: replicas' clocks differ). They bound how far ahead
//! a proof can be made, not replays.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use writ_token::{DPOP_MAX_AGE, DpopError, ProofRules, Replay, SeenProofs, VerifiedProof};

use crate::AuthorizationServer;
use crate::error::{Error, Result};

/// Proof ids remembered per generation (16 bytes each: 16 MiB per generation at most).
pub const MAX_REMEMBERED: usize = 1_000_000;
/// A nonce's window, in seconds: a nonce is good in its window and the next.
const NONCE_WINDOW: i64 = 300;
/// How far ahead another replica's clock may be when it mints a nonce.
const NONCE_SKEW: i64 = 30;

/// What the transport says of a request's proof: the `DPoP` header (several joined with
/// commas, which no proof holds, so they are refused), and the request's method and URI as the
/// proof must name them.
#[derive(Clone, Default)]
pub struct DpopRequest {
    pub proof: String,
    pub htm: String,
    pub htu: String,
}

impl std::fmt::Debug for DpopRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopRequest")
            .field("htm", &self.htm)
            .field("htu", &self.htu)
            .finish_non_exhaustive()
    }
}

pub(crate) struct DpopState {
    seen: SeenProofs,
    nonce_key: Vec<u8>,
}

impl std::fmt::Debug for DpopState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DpopState")
    }
}

impl DpopState {
    /// The purpose nonces' key is derived from the key-encryption key for.
    pub(crate) const PURPOSE: &'static [u8] = b"writ dpop nonces v1";

    pub(crate) fn new(nonce_key: &[u8]) -> Self {
        DpopState {
            seen: SeenProofs::new(MAX_REMEMBERED),
            nonce_key: nonce_key.to_vec(),
        }
    }

    fn nonce_mac(&self, window: i64) -> Vec<u8> {
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.nonce_key).expect("HMAC takes any key");
        mac.update(&window.to_be_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// A nonce for now.
    pub(crate) fn nonce(&self, now: i64) -> String {
        let window = now.div_euclid(NONCE_WINDOW);
        let mut bytes = window.to_be_bytes().to_vec();
        bytes.extend(self.nonce_mac(window));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `nonce` is one of this window's or the last one's, or the next one's if it starts
    /// within the skew another replica's clock may have.
    pub(crate) fn accepts(&self, nonce: &str, now: i64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        if bytes.len() != 24 {
            return false;
        }
        let window = i64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
        let current = now.div_euclid(NONCE_WINDOW);
        let ahead = (now + NONCE_SKEW).div_euclid(NONCE_WINDOW);
        (window == current || window == current - 1 || window == ahead)
            && subtle::ConstantTimeEq::ct_eq(&bytes[8..], &self.nonce_mac(window)[..]).into()
    }

    /// Remembers a proof's id; a second time, or with no room left, it is refused.
    fn spend(&self, jkt: &str, jti: &str, now: i64, window: i64) -> Result<()> {
        self.seen.spend(jkt, jti, now, window).map_err(|e| match e {
            Replay::Replayed => Error::InvalidDpopProof("the DPoP proof was used before"),
            Replay::Full => Error::Unavailable("too many DPoP proofs at once; retry"),
        })
    }
}

impl AuthorizationServer {
    /// The `DPoP-Nonce` to send with a `use_dpop_nonce` refusal.
    pub fn dpop_nonce(&self) -> String {
        self.dpop.nonce(self.now())
    }

    /// Verifies a token request's proof, statelessly: the proof (its key's thumbprint and its
    /// `jti`, to spend with [`Self::spend_dpop`] before minting), or `None` without one.
    pub(crate) fn verify_dpop(&self, dpop: Option<&DpopRequest>) -> Result<Option<VerifiedProof>> {
        let Some(d) = dpop else {
            return Ok(None);
        };
        let now = self.now();
        let accepts = |n: &str| self.dpop.accepts(n, now);
        let rules = ProofRules {
            htm: &d.htm,
            htu: &d.htu,
            now,
            max_age: DPOP_MAX_AGE,
            leeway: self.config.leeway,
            access_token: None,
            nonce: self
                .config
                .dpop_nonce_required
                .then_some(&accepts as &dyn Fn(&str) -> bool),
        };
        let proof = writ_token::verify_proof(&d.proof, &rules).map_err(|e| match e {
            DpopError::Invalid(why) => Error::InvalidDpopProof(why),
            DpopError::UseNonce => Error::UseDpopNonce,
        })?;
        Ok(Some(proof))
    }

    /// Spends a verified proof's `jti` (a second time it is `invalid_dpop_proof`): called
    /// when tokens bound to its key are about to be minted, before any state changes.
    pub(crate) fn spend_dpop(&self, jkt: &str, jti: &str) -> Result<()> {
        self.dpop
            .spend(jkt, jti, self.now(), DPOP_MAX_AGE + 2 * self.config.leeway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_for_its_window_and_the_next_under_its_key_only() {
        let state = DpopState::new(b"one key");
        let n = state.nonce(1_000_000);
        assert!(state.accepts(&n, 1_000_000));
        assert!(state.accepts(&n, 1_000_000 + NONCE_WINDOW));
        assert!(!state.accepts(&n, 1_000_000 + 2 * NONCE_WINDOW));
        assert!(!state.accepts(&n, 1_000_000 - NONCE_WINDOW));
        // Minted by a replica whose clock is a little ahead, just past a window's start.
        let start = 1_000_200 - 1_000_200 % NONCE_WINDOW + NONCE_WINDOW;
        let ahead = state.nonce(start + 1);
        assert!(state.accepts(&ahead, start - 10));
        assert!(!state.accepts(&ahead, start - NONCE_SKEW - 10));
        assert!(!DpopState::new(b"another key").accepts(&n, 1_000_000));
        assert!(!state.accepts("garbage", 1_000_000));
        assert!(!state.accepts("", 1_000_000));
    }

    #[test]
    fn a_spent_proof_is_refused_as_reused() {
        let state = DpopState::new(b"k");
        assert!(state.spend("thumb", "a", 1000, 180).is_ok());
        assert!(matches!(
            state.spend("thumb", "a", 1001, 180),
            Err(Error::InvalidDpopProof(_))
        ));
    }
}
