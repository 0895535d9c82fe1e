//! Who may call the admin API, and for what. The master admin credential may do anything; an
//! access token this server issued for the `writ-admin` audience may do only what its
//! `writ.admin.*` scopes name, so a standalone STS or a tool holds a narrow, expiring,
//! revocable credential instead of the master one.

use writ_token::TokenError;
use writ_vocabulary::names::{
    ADMIN_AUDIENCE, ADMIN_AUTHENTICATE_CLIENT_SCOPE, ADMIN_READ_SCOPE, ADMIN_REVOKE_SCOPE,
    ADMIN_WRITE_SCOPE,
};

use crate::error::{Error, Result};
use crate::{AuthorizationServer, MAX_TOKEN_LEN};

/// What an admin call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPermission {
    /// `AuthenticateClient`.
    AuthenticateClient,
    /// Reading clients, keys and policies.
    Read,
    /// Changing clients, users, keys and policies.
    Write,
    /// `Revoke`.
    Revoke,
    /// Only the master credential (rotating it, and any method not listed).
    Master,
}

impl AdminPermission {
    /// The scope an admin token needs for it; `None` if no token may.
    pub fn scope(self) -> Option<&'static str> {
        match self {
            AdminPermission::AuthenticateClient => Some(ADMIN_AUTHENTICATE_CLIENT_SCOPE),
            AdminPermission::Read => Some(ADMIN_READ_SCOPE),
            AdminPermission::Write => Some(ADMIN_WRITE_SCOPE),
            AdminPermission::Revoke => Some(ADMIN_REVOKE_SCOPE),
            AdminPermission::Master => None,
        }
    }
}

/// Who made an admin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCaller {
    /// The holder of the master admin credential.
    Master,
    /// A client, with an admin token.
    Client { client_id: String },
}

impl AdminCaller {
    /// Whether it holds the master credential.
    pub fn is_master(&self) -> bool {
        matches!(self, AdminCaller::Master)
    }

    /// For audit records.
    pub fn name(&self) -> &str {
        match self {
            AdminCaller::Master => "admin",
            AdminCaller::Client { client_id } => client_id,
        }
    }
}

impl AuthorizationServer {
    /// Checks an admin call's bearer credential for what the call needs. A JWT (it has dots;
    /// the master credential has none) is an admin token: issued here, for `writ-admin`, live
    /// (no revocation of it, its grant, client or key), of a client that still exists and is
    /// enabled, and carrying the call's scope. Anything else is the master credential.
    pub async fn authorize_admin(
        &self,
        credential: &str,
        needs: AdminPermission,
    ) -> Result<AdminCaller> {
        match self.admin_decision(credential, needs).await {
            Ok(caller) => Ok(caller),
            Err(denied) => {
                // The master credential's failures are recorded where it is checked.
                if !denied.why.is_empty() {
                    self.audit_refusal(
                        writ_audit::Event::new("admin_call_refused", writ_audit::Outcome::Refused)
                            .actor(&denied.client)
                            .client(&denied.client)
                            .reason(denied.why)
                            .detail("needs", format!("{needs:?}")),
                    )
                    .await;
                }
                Err(denied.error)
            }
        }
    }

    async fn admin_decision(
        &self,
        credential: &str,
        needs: AdminPermission,
    ) -> std::result::Result<AdminCaller, Denied> {
        if !writ_vocabulary::looks_like_jwt(credential) {
            self.authenticate_admin(credential).await?;
            return Ok(AdminCaller::Master);
        }
        let refused = |why: &'static str, client: &str| Denied {
            error: Error::AdminUnauthenticated,
            why,
            client: client.to_owned(),
        };
        if credential.len() > MAX_TOKEN_LEN {
            return Err(refused("too_large", ""));
        }
        let token = match self.verifier.verify_off_runtime(credential, None).await {
            Ok(t) => t,
            Err(e @ TokenError::Overloaded) => return Err(Error::from(e).into()),
            Err(_) => return Err(refused("invalid_token", "")),
        };
        let c = &token.claims;
        // For the admin API alone: a token also addressed to a service could be replayed here
        // by that service, or by whoever stole it there.
        if c.aud.len() != 1 || c.aud[0] != ADMIN_AUDIENCE {
            return Err(refused("wrong_audience", &c.client_id));
        }
        if !self.is_live(&token).await? {
            return Err(refused("revoked", &c.client_id));
        }
        // The client as it is now: enabled, still allowed the admin audience, not re-created
        // since the token was issued; and the token's scopes count only while the client still
        // has them (a scope taken away ends at once, not when the token expires).
        let client = match self.client_record(&c.client_id).await {
            Ok(client) => client,
            Err(Error::NotFound(_)) => return Err(refused("client_gone", &c.client_id)),
            Err(e) => return Err(e.into()),
        };
        if client.disabled
            || c.iat < client.created_at
            || !client.audience.iter().any(|a| a == ADMIN_AUDIENCE)
        {
            return Err(refused("client_changed", &c.client_id));
        }
        let has = |scopes: &str, s: &str| scopes.split(' ').any(|have| have == s);
        let granted = needs
            .scope()
            .is_some_and(|s| has(&c.scope, s) && has(&client.scope, s));
        if !granted {
            return Err(Denied {
                error: Error::AdminForbidden(match needs {
                    AdminPermission::Master => "only the admin credential may do this",
                    _ => "the admin token lacks the scope this call needs",
                }),
                why: "insufficient_scope",
                client: c.client_id.clone(),
            });
        }
        Ok(AdminCaller::Client {
            client_id: c.client_id.clone(),
        })
    }
}

/// An admin call refused: the error to answer, and what the audit record says (`why` empty:
/// not a refusal of the credential, or one recorded elsewhere).
struct Denied {
    error: Error,
    why: &'static str,
    client: String,
}

impl From<Error> for Denied {
    fn from(error: Error) -> Self {
        Denied {
            error,
            why: "",
            client: String::new(),
        }
    }
}
