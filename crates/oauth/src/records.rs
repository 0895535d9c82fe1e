//! What the engine stores, as versioned protobuf records (see `writ_store::Record`).

use writ_store::{Record, Tree};

pub const CLIENT_CONFIDENTIAL: i32 = 1;
pub const CLIENT_PUBLIC: i32 = 2;

pub const AUTH_CLIENT_SECRET: i32 = 0;
pub const AUTH_PRIVATE_KEY_JWT: i32 = 1;
/// RFC 8705 section 2.2: the client's TLS certificate, registered in its `jwks` (`x5c`).
pub const AUTH_SELF_SIGNED_TLS: i32 = 2;
/// RFC 8705 section 2.1: a certificate from a CA trusted for clients, naming the client.
pub const AUTH_TLS: i32 = 3;

pub const FORMAT_JWT: i32 = 1;
pub const FORMAT_BISCUIT: i32 = 2;
pub const FORMAT_JWT_AND_BISCUIT: i32 = 3;
pub const FORMAT_REFERENCE: i32 = 4;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientRecord {
    #[prost(string, tag = "1")]
    pub client_id: String,
    #[prost(string, tag = "2")]
    pub client_name: String,
    /// CLIENT_CONFIDENTIAL or CLIENT_PUBLIC.
    #[prost(int32, tag = "3")]
    pub client_type: i32,
    /// Keyed hash of the secret; empty for public clients.
    #[prost(bytes = "vec", tag = "4")]
    pub secret_hash: Vec<u8>,
    #[prost(string, repeated, tag = "5")]
    pub grant_types: Vec<String>,
    #[prost(string, tag = "6")]
    pub scope: String,
    #[prost(string, repeated, tag = "7")]
    pub audience: Vec<String>,
    #[prost(int64, tag = "8")]
    pub access_token_lifetime: i64,
    #[prost(int64, tag = "9")]
    pub refresh_token_lifetime: i64,
    /// FORMAT_* values.
    #[prost(int32, repeated, tag = "10")]
    pub token_formats: Vec<i32>,
    #[prost(int32, tag = "11")]
    pub default_token_format: i32,
    #[prost(bool, tag = "12")]
    pub may_introspect: bool,
    #[prost(bool, tag = "13")]
    pub disabled: bool,
    #[prost(int64, tag = "14")]
    pub created_at: i64,
    /// The secret before the last rotation, accepted until `previous_secret_expires_at`.
    #[prost(bytes = "vec", tag = "15")]
    pub previous_secret_hash: Vec<u8>,
    #[prost(int64, tag = "16")]
    pub previous_secret_expires_at: i64,
    /// Where authorization responses may go: compared exactly (RFC 9700 section 4.1.3).
    #[prost(string, repeated, tag = "17")]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back to, compared exactly.
    #[prost(string, repeated, tag = "18")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Authorization requests only by reference, pushed first (RFC 9126 section 6).
    #[prost(bool, tag = "19")]
    pub require_pushed_authorization_requests: bool,
    /// Random, set at registration: a client deleted and registered again under the same id is
    /// another registration (consents given to the first do not carry over).
    #[prost(string, tag = "20")]
    pub registration_id: String,
    /// OpenID Connect Back-Channel Logout: where a logout token is POSTed when a session that
    /// signed in to this client ends.
    #[prost(string, tag = "21")]
    pub backchannel_logout_uri: String,
    /// How a confidential client authenticates: AUTH_CLIENT_SECRET (0, every record before
    /// this field), AUTH_PRIVATE_KEY_JWT or AUTH_SELF_SIGNED_TLS. A public client does not.
    #[prost(int32, tag = "22")]
    pub auth_method: i32,
    /// Its public keys, a JWK Set (RFC 7517), for `private_key_jwt`.
    #[prost(string, tag = "23")]
    pub jwks: String,
    /// Or where it publishes them (https), fetched by the transport's `ClientKeyFetcher`.
    #[prost(string, tag = "24")]
    pub jwks_uri: String,
    /// RFC 8705 section 3.4: its access tokens are bound to its TLS client certificate.
    #[prost(bool, tag = "25")]
    pub tls_client_certificate_bound_access_tokens: bool,
    /// RFC 8705 section 2.1.2: what a `tls_client_auth` client's certificate names.
    #[prost(string, tag = "26")]
    pub tls_client_auth_san_dns: String,
    #[prost(string, tag = "27")]
    pub tls_client_auth_san_uri: String,
    #[prost(string, tag = "28")]
    pub tls_client_auth_san_ip: String,
    #[prost(string, tag = "29")]
    pub tls_client_auth_san_email: String,
    #[prost(string, tag = "30")]
    pub tls_client_auth_subject_dn: String,
    /// RFC 9449 section 5.2: every token request proves a DPoP key.
    #[prost(bool, tag = "31")]
    pub dpop_bound_access_tokens: bool,
}

impl Record for ClientRecord {
    const TREE: Tree = Tree::Clients;
}

impl ClientRecord {
    /// Authenticates with a secret (a confidential client registered for it).
    pub fn uses_secret(&self) -> bool {
        self.is_confidential() && self.auth_method == AUTH_CLIENT_SECRET
    }

    pub fn is_confidential(&self) -> bool {
        self.client_type == CLIENT_CONFIDENTIAL
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserRecord {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(string, tag = "2")]
    pub subject: String,
    /// argon2id, PHC string format.
    #[prost(string, tag = "3")]
    pub password_hash: String,
    #[prost(string, tag = "4")]
    pub scope: String,
    #[prost(bool, tag = "5")]
    pub disabled: bool,
    #[prost(int64, tag = "6")]
    pub created_at: i64,
}

impl Record for UserRecord {
    const TREE: Tree = Tree::Users;
}

// Signing keys are stored by `writ-keyring`, shared with the STS.

/// A grant: the root of a refresh family or an exchange lineage.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantRecord {
    #[prost(string, tag = "1")]
    pub gid: String,
    #[prost(string, tag = "2")]
    pub client_id: String,
    #[prost(string, tag = "3")]
    pub subject: String,
    #[prost(string, tag = "4")]
    pub scope: String,
    #[prost(int64, tag = "5")]
    pub created_at: i64,
    /// Absolute end of the family, whatever the rotations.
    #[prost(int64, tag = "6")]
    pub expires_at: i64,
    /// Tags 7-9 held a revoked flag before revocations had their own index; not reused.
    #[prost(string, tag = "10")]
    pub username: String,
}

impl Record for GrantRecord {
    const TREE: Tree = Tree::Grants;
}

pub const REFRESH_ACTIVE: i32 = 1;
pub const REFRESH_USED: i32 = 2;
/// Never used, and replaced: its predecessor was presented again within the rotation grace
/// period. Presenting it is reuse.
pub const REFRESH_REPLACED: i32 = 3;

/// A refresh token, stored under the keyed hash of its value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RefreshTokenRecord {
    #[prost(string, tag = "1")]
    pub gid: String,
    #[prost(string, tag = "2")]
    pub client_id: String,
    #[prost(string, tag = "3")]
    pub subject: String,
    /// The grant's scope: unchanged by rotation (RFC 6749 section 6).
    #[prost(string, tag = "4")]
    pub scope: String,
    #[prost(int64, tag = "5")]
    pub issued_at: i64,
    #[prost(int64, tag = "6")]
    pub expires_at: i64,
    #[prost(int32, tag = "7")]
    pub state: i32,
    #[prost(int64, tag = "8")]
    pub used_at: i64,
    #[prost(string, tag = "9")]
    pub username: String,
    /// The grant's start and end, so a rotation need not read the grant (0: a token issued
    /// before they were recorded; its grant is read).
    #[prost(int64, tag = "10")]
    pub grant_created_at: i64,
    #[prost(int64, tag = "11")]
    pub grant_expires_at: i64,
    /// Once used: the stored key of the token that replaced it (for the rotation grace period).
    #[prost(bytes = "vec", tag = "12")]
    pub successor: Vec<u8>,
    /// The thumbprint of the DPoP key a public client's token is bound to (RFC 9449 section
    /// 5); empty: not bound.
    #[prost(string, tag = "13")]
    pub jkt: String,
}

impl Record for RefreshTokenRecord {
    const TREE: Tree = Tree::RefreshTokens;
}

/// A revocation: in the local index (`r/` + kind + value) until `expires_at`, and in the outbox
/// (`o/` + sequence) until the revocation service has acknowledged it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RevocationRecord {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub value: String,
    #[prost(int64, tag = "3")]
    pub expires_at: i64,
    #[prost(int64, tag = "4")]
    pub not_before: i64,
    #[prost(string, tag = "5")]
    pub reason: String,
    #[prost(int64, tag = "6")]
    pub revoked_at: i64,
}

impl Record for RevocationRecord {
    const TREE: Tree = Tree::Revocations;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExchangePolicyRecord {
    #[prost(string, tag = "1")]
    pub policy_id: String,
    #[prost(string, tag = "2")]
    pub client_id: String,
    #[prost(string, repeated, tag = "3")]
    pub audience: Vec<String>,
    #[prost(string, tag = "4")]
    pub scope: String,
    #[prost(int64, tag = "5")]
    pub max_lifetime: i64,
    #[prost(bool, tag = "6")]
    pub allow_impersonation: bool,
    #[prost(int32, tag = "7")]
    pub max_chain_depth: i32,
}

impl Record for ExchangePolicyRecord {
    const TREE: Tree = Tree::ExchangePolicies;
}

/// Secrets the server keeps about itself, in the `meta` tree.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerSecretsRecord {
    /// Key of the keyed hash for client secrets, refresh tokens and the admin credential.
    #[prost(bytes = "vec", tag = "1")]
    pub secret_hash_key: Vec<u8>,
    /// Keyed hash of the admin credential.
    #[prost(bytes = "vec", tag = "2")]
    pub admin_credential_hash: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub created_at: i64,
}

impl Record for ServerSecretsRecord {
    const TREE: Tree = Tree::Meta;
}

/// A browser's sign-in session at Writ (single sign-on), under `s/` + the keyed hash of its
/// cookie's value, in [`Tree::SignIn`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionRecord {
    /// The session's public id (`sid` in ID tokens and logout tokens).
    #[prost(string, tag = "1")]
    pub sid: String,
    #[prost(string, tag = "2")]
    pub username: String,
    #[prost(string, tag = "3")]
    pub subject: String,
    /// When the user last authenticated in it.
    #[prost(int64, tag = "4")]
    pub auth_time: i64,
    /// Authentication methods (RFC 8176), e.g. `pwd`.
    #[prost(string, repeated, tag = "5")]
    pub amr: Vec<String>,
    #[prost(int64, tag = "6")]
    pub created_at: i64,
    /// Absolute end, whatever the activity.
    #[prost(int64, tag = "7")]
    pub expires_at: i64,
    /// The grants issued in it, as sessions written before the grants had keys of their own
    /// kept them (read, never written): signing out revokes each.
    #[prost(string, repeated, tag = "8")]
    pub gids: Vec<String>,
    /// The client of each of `gids`, in the same order.
    #[prost(string, repeated, tag = "9")]
    pub gid_clients: Vec<String>,
    /// How many grants it has issued: the next one's number ([`SessionGrantRecord`]).
    #[prost(uint64, tag = "10")]
    pub grants_issued: u64,
    /// The number of its oldest grant that may still be listed (those before it were revoked
    /// past the session's bound).
    #[prost(uint64, tag = "11")]
    pub oldest_grant: u64,
}

/// A grant a session issued, under `q/` + the session's `sid` + `/` + the grant's number
/// (big-endian) in [`Tree::SignIn`]: one small key per grant, so issuing one costs the same
/// however many the session has (they were a list in the session record, rewritten with every
/// code). Signing out revokes each; a consent revoked, those of its client.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionGrantRecord {
    #[prost(string, tag = "1")]
    pub gid: String,
    #[prost(string, tag = "2")]
    pub client_id: String,
    /// The session's subject, to find whether it still lives when pruning.
    #[prost(string, tag = "3")]
    pub subject: String,
    /// The session's end when the grant was issued (it may be renewed since).
    #[prost(int64, tag = "4")]
    pub expires_at: i64,
}

impl Record for SessionGrantRecord {
    const TREE: Tree = Tree::SignIn;
}

impl Record for SessionRecord {
    const TREE: Tree = Tree::SignIn;
}

/// Where a user's session is, under `v/` + the keyed hash of the subject + the session's `sid`
/// in [`Tree::SignIn`]: how an administrator (or a password reset) finds a person's sessions
/// without reading every session. Written and removed in the session's own batches.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionIndexRecord {
    /// The session's key (`s/` + the keyed hash of its cookie).
    #[prost(bytes = "vec", tag = "1")]
    pub session_key: Vec<u8>,
    /// The session's end, so pruning needs no second read.
    #[prost(int64, tag = "2")]
    pub expires_at: i64,
}

impl Record for SessionIndexRecord {
    const TREE: Tree = Tree::SignIn;
}

/// What an authorization code carries, sealed in the code itself (`crate::codes`); once the
/// code is redeemed, a mark of it (its client, grant id, lifetime and `used`) under `c/` + the
/// keyed hash of its grant id, in [`Tree::SignIn`], until it can no longer be presented.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthCodeRecord {
    #[prost(string, tag = "1")]
    pub client_id: String,
    #[prost(string, tag = "2")]
    pub redirect_uri: String,
    /// RFC 7636 `S256` challenge: base64url(SHA-256(verifier)).
    #[prost(string, tag = "3")]
    pub code_challenge: String,
    #[prost(string, tag = "4")]
    pub scope: String,
    #[prost(string, repeated, tag = "5")]
    pub audience: Vec<String>,
    #[prost(string, tag = "6")]
    pub nonce: String,
    #[prost(string, tag = "7")]
    pub username: String,
    #[prost(string, tag = "8")]
    pub subject: String,
    #[prost(int64, tag = "9")]
    pub auth_time: i64,
    #[prost(string, repeated, tag = "10")]
    pub amr: Vec<String>,
    #[prost(string, tag = "11")]
    pub sid: String,
    /// The grant its tokens belong to: a replayed code revokes it.
    #[prost(string, tag = "12")]
    pub gid: String,
    #[prost(int64, tag = "13")]
    pub issued_at: i64,
    #[prost(int64, tag = "14")]
    pub expires_at: i64,
    #[prost(bool, tag = "15")]
    pub used: bool,
    /// The key of the session it was issued in (`s/` + the keyed hash of its cookie), read
    /// first at redemption; the index finds a session renewed since under another key.
    #[prost(bytes = "vec", tag = "16")]
    pub session_key: Vec<u8>,
    /// The client's `registration_id` when the code was issued: a client deleted and
    /// registered again under the same id does not redeem the codes of the one before.
    #[prost(string, tag = "17")]
    pub client_registration_id: String,
}

impl Record for AuthCodeRecord {
    const TREE: Tree = Tree::SignIn;
}

/// What a user let a client have, under `k/` + subject + `/` + client id, in [`Tree::SignIn`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConsentRecord {
    #[prost(string, tag = "1")]
    pub subject: String,
    #[prost(string, tag = "2")]
    pub client_id: String,
    /// Space-delimited.
    #[prost(string, tag = "3")]
    pub scope: String,
    #[prost(int64, tag = "4")]
    pub granted_at: i64,
    /// The client's `created_at` when consent was given: a client deleted and registered again
    /// under the same id is another client, and asks again.
    #[prost(int64, tag = "5")]
    pub client_created_at: i64,
    /// The audiences the tokens may be for.
    #[prost(string, repeated, tag = "6")]
    pub audience: Vec<String>,
    /// The client's `registration_id` when consent was given.
    #[prost(string, tag = "7")]
    pub client_registration_id: String,
}

impl ConsentRecord {
    /// Whether this consent covers `scope` for `audience`, given by the user to this very
    /// client.
    pub fn covers(
        &self,
        client: &ClientRecord,
        scope: &writ_token::Scopes,
        audience: &[String],
    ) -> bool {
        self.client_created_at == client.created_at
            && self.client_registration_id == client.registration_id
            && audience.iter().all(|a| self.audience.contains(a))
            && writ_token::Scopes::parse(&self.scope).is_ok_and(|c| scope.is_subset(&c))
    }

    /// This consent widened by `scope` and `audience` (a new consent when `self` is another
    /// registration's).
    pub fn widened(
        current: Option<ConsentRecord>,
        subject: &str,
        client: &ClientRecord,
        scope: &writ_token::Scopes,
        audience: &[String],
        now: i64,
    ) -> ConsentRecord {
        let current = current.filter(|c| {
            c.client_created_at == client.created_at
                && c.client_registration_id == client.registration_id
        });
        let mut all = scope.clone();
        let mut audiences: Vec<String> = audience.to_vec();
        if let Some(c) = &current {
            if let Ok(before) = writ_token::Scopes::parse(&c.scope) {
                all = all.union(&before);
            }
            audiences.extend(c.audience.iter().cloned());
        }
        audiences.sort();
        audiences.dedup();
        ConsentRecord {
            subject: subject.to_owned(),
            client_id: client.client_id.clone(),
            scope: all.to_string(),
            granted_at: now,
            client_created_at: client.created_at,
            audience: audiences,
            client_registration_id: client.registration_id.clone(),
        }
    }
}

impl Record for ConsentRecord {
    const TREE: Tree = Tree::SignIn;
}

/// A pushed authorization request (RFC 9126), under `p/` + the keyed hash of its
/// `request_uri`'s id, in [`Tree::SignIn`]: the parameters as the client pushed them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushedRequestRecord {
    #[prost(string, tag = "1")]
    pub client_id: String,
    #[prost(string, tag = "2")]
    pub response_type: String,
    #[prost(string, tag = "3")]
    pub redirect_uri: String,
    #[prost(string, tag = "4")]
    pub scope: String,
    #[prost(string, tag = "5")]
    pub state: String,
    #[prost(string, tag = "6")]
    pub code_challenge: String,
    #[prost(string, tag = "7")]
    pub code_challenge_method: String,
    #[prost(string, tag = "8")]
    pub nonce: String,
    #[prost(string, tag = "9")]
    pub prompt: String,
    #[prost(string, tag = "10")]
    pub max_age: String,
    #[prost(string, tag = "11")]
    pub response_mode: String,
    #[prost(string, repeated, tag = "12")]
    pub audience: Vec<String>,
    #[prost(string, repeated, tag = "13")]
    pub resource: Vec<String>,
    #[prost(int64, tag = "14")]
    pub pushed_at: i64,
    #[prost(int64, tag = "15")]
    pub expires_at: i64,
    /// The session (`sid`) whose sign-in answered its `prompt=login` / `max_age`, and whose
    /// consent answered its `prompt=consent` (a pushed request is resumed as it was pushed, so
    /// what it asked for is remembered here).
    #[prost(string, tag = "16")]
    pub signed_in_sid: String,
    #[prost(string, tag = "17")]
    pub consented_sid: String,
}

impl Record for PushedRequestRecord {
    const TREE: Tree = Tree::SignIn;
}

pub const DEVICE_PENDING: i32 = 1;
pub const DEVICE_APPROVED: i32 = 2;
pub const DEVICE_DENIED: i32 = 3;
pub const DEVICE_USED: i32 = 4;

/// A device authorization (RFC 8628), under `d/` + the keyed hash of its device code, in
/// [`Tree::SignIn`]; its user code points to it from `u/` + the user code.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceRecord {
    #[prost(string, tag = "1")]
    pub client_id: String,
    /// What the device asked for (before the user's own scope).
    #[prost(string, tag = "2")]
    pub scope: String,
    #[prost(string, repeated, tag = "3")]
    pub audience: Vec<String>,
    /// As shown to the user, without its dash.
    #[prost(string, tag = "4")]
    pub user_code: String,
    /// DEVICE_* values.
    #[prost(int32, tag = "5")]
    pub state: i32,
    #[prost(int64, tag = "6")]
    pub issued_at: i64,
    #[prost(int64, tag = "7")]
    pub expires_at: i64,
    /// Seconds between polls; grows by 5 at each `slow_down`.
    #[prost(int64, tag = "8")]
    pub interval: i64,
    #[prost(int64, tag = "9")]
    pub last_polled_at: i64,
    /// Once approved: who, how, and what was granted.
    #[prost(string, tag = "10")]
    pub username: String,
    #[prost(string, tag = "11")]
    pub subject: String,
    #[prost(int64, tag = "12")]
    pub auth_time: i64,
    #[prost(string, repeated, tag = "13")]
    pub amr: Vec<String>,
    #[prost(string, tag = "14")]
    pub sid: String,
    #[prost(string, tag = "15")]
    pub gid: String,
    #[prost(string, tag = "16")]
    pub granted_scope: String,
    /// When the person approved: the grant begins then.
    #[prost(int64, tag = "17")]
    pub approved_at: i64,
}

impl Record for DeviceRecord {
    const TREE: Tree = Tree::SignIn;
}

/// A client assertion's `jti`, spent (RFC 7523 section 3, item 7): under `j/` + the keyed hash
/// of the client id and the `jti`, until the assertion expires.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpentAssertionRecord {
    #[prost(int64, tag = "1")]
    pub expires_at: i64,
}

impl Record for SpentAssertionRecord {
    const TREE: Tree = Tree::SignIn;
}

/// A trusted workload identity issuer (the JWT-bearer grant, RFC 7523 section 2.1) with its
/// policies, under its `iss`, in [`Tree::Workloads`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkloadIssuerRecord {
    #[prost(string, tag = "1")]
    pub issuer: String,
    #[prost(string, tag = "2")]
    pub jwks: String,
    #[prost(string, tag = "3")]
    pub jwks_uri: String,
    #[prost(string, tag = "4")]
    pub audience: String,
    #[prost(int64, tag = "5")]
    pub max_token_lifetime: i64,
    #[prost(bool, tag = "6")]
    pub single_use: bool,
    #[prost(message, repeated, tag = "7")]
    pub policies: Vec<WorkloadPolicyRecord>,
    #[prost(int64, tag = "8")]
    pub created_at: i64,
}

impl Record for WorkloadIssuerRecord {
    const TREE: Tree = Tree::Workloads;
}

/// Which subjects of a workload issuer get tokens as which client, with what at most.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkloadPolicyRecord {
    #[prost(string, tag = "1")]
    pub policy_id: String,
    #[prost(string, tag = "2")]
    pub subject: String,
    #[prost(string, tag = "3")]
    pub client_id: String,
    #[prost(string, tag = "4")]
    pub scope: String,
    #[prost(string, repeated, tag = "5")]
    pub audience: Vec<String>,
}
