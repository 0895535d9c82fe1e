//! Who called: what the guard hands a handler in the request's extensions.

use std::sync::Arc;

use writ_token::{Actor, TokenFormat, VerifiedToken};

/// The verified caller. Read it with [`Principal::of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub token_id: String,
    /// Shared by every token derived from one grant (refresh family, exchange lineage).
    pub grant_id: Option<String>,
    /// The delegation chain (`act`), most recent actor first.
    pub actor: Option<Actor>,
    pub audience: Vec<String>,
    pub expires_at: i64,
    pub format: TokenFormat,
}

impl Principal {
    pub fn from_verified(v: &VerifiedToken) -> Self {
        let c = &v.claims;
        Principal {
            issuer: c.iss.clone(),
            subject: c.sub.clone(),
            client_id: c.client_id.clone(),
            scopes: c
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            token_id: c.jti.clone(),
            grant_id: c.gid.clone(),
            actor: c.act.clone(),
            audience: c.aud.clone(),
            expires_at: c.exp,
            format: v.format,
        }
    }

    /// The principal the guard attached to a request (`None` on a public method).
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Principal> {
        request
            .extensions()
            .get::<Arc<Principal>>()
            .map(|p| p.as_ref())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The actors along the delegation chain, most recent first.
    pub fn actors(&self) -> Vec<&Actor> {
        let mut out = Vec::new();
        let mut next = self.actor.as_ref();
        while let Some(a) = next {
            out.push(a);
            next = a.act.as_deref();
        }
        out
    }
}
