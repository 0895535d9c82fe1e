//! `Debug` for the messages that carry a credential: the secret fields print as `<redacted>`
//! (or `""` when empty, which is worth seeing), everything else as derived. The build skips
//! prost's derived `Debug` for exactly these messages ([`SECRET_BEARING`]), so a request logged
//! with `{:?}` (a `tracing` field, an `instrument`ed handler, a test's assertion message) never
//! writes a secret, a password or a live token into a log.
//!
//! Each impl destructures its message exhaustively: a field added to the proto fails the build
//! here until it is listed, as shown or as secret.

use std::fmt;

include!("secret_bearing.rs");

/// A secret field as `Debug` shows it.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

macro_rules! redacted_debug {
    ($($m:ident::$ty:ident { shown: [$($shown:ident),*], secret: [$($secret:ident),*] })*) => {$(
        impl fmt::Debug for $m::$ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let Self { $($shown,)* $($secret,)* } = self;
                let mut d = f.debug_struct(stringify!($ty));
                $(d.field(stringify!($shown), $shown);)*
                $(d.field(stringify!($secret), &Redacted($secret));)*
                d.finish()
            }
        }
    )*};
}

use crate::{admin, authz, sts};

redacted_debug! {
    authz::TokenRequest {
        shown: [grant_type, client_id, scope, username, audience, resource, token_format,
            redirect_uri, client_assertion_type],
        secret: [client_secret, refresh_token, password, code, code_verifier, device_code,
            client_assertion, assertion]
    }
    authz::TokenResponse {
        shown: [token_type, expires_in, scope, issued_token_type],
        secret: [access_token, refresh_token, biscuit, id_token]
    }
    authz::DeviceAuthorizationRequest {
        shown: [client_id, scope, audience, resource, client_assertion_type],
        secret: [client_secret, client_assertion]
    }
    authz::DeviceAuthorizationResponse {
        shown: [user_code, verification_uri, verification_uri_complete, expires_in, interval],
        secret: [device_code]
    }
    authz::IntrospectRequest {
        shown: [token_type_hint, client_id, client_assertion_type],
        secret: [token, client_secret, client_assertion]
    }
    authz::RevokeRequest {
        shown: [token_type_hint, client_id, client_assertion_type],
        secret: [token, client_secret, client_assertion]
    }
    sts::ExchangeRequest {
        shown: [grant_type, client_id, audience, resource, scope, requested_token_type,
            subject_token_type, actor_token_type, client_assertion_type],
        secret: [client_secret, subject_token, actor_token, client_assertion]
    }
    sts::ExchangeResponse {
        shown: [issued_token_type, token_type, expires_in, scope],
        secret: [access_token, refresh_token]
    }
    admin::RotateAdminCredentialResponse { shown: [], secret: [admin_credential] }
    admin::CreateClientResponse { shown: [client], secret: [client_secret] }
    admin::RotateClientSecretResponse { shown: [], secret: [client_secret] }
    admin::CreateUserRequest { shown: [username, scope], secret: [password] }
    admin::SetUserPasswordRequest { shown: [username], secret: [password] }
    admin::AuthenticateClientRequest {
        shown: [client_id, client_assertion_type, audience],
        secret: [client_secret, client_assertion]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-value-that-must-not-show";

    /// Every secret-bearing message, its secret fields set to [`SECRET`], its other fields to
    /// something visible.
    fn debugged() -> Vec<String> {
        let s = || SECRET.to_owned();
        vec![
            format!(
                "{:?}",
                authz::TokenRequest {
                    grant_type: "refresh_token".into(),
                    client_id: "svc".into(),
                    client_secret: s(),
                    refresh_token: s(),
                    password: s(),
                    code: s(),
                    code_verifier: s(),
                    device_code: s(),
                    client_assertion: s(),
                    assertion: s(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                authz::TokenResponse {
                    access_token: s(),
                    refresh_token: s(),
                    biscuit: s(),
                    id_token: s(),
                    token_type: "Bearer".into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                authz::DeviceAuthorizationRequest {
                    client_id: "svc".into(),
                    client_secret: s(),
                    client_assertion: s(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                authz::DeviceAuthorizationResponse {
                    device_code: s(),
                    user_code: "WDJB-MJHT".into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                authz::IntrospectRequest {
                    token: s(),
                    client_id: "svc".into(),
                    client_secret: s(),
                    client_assertion: s(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                authz::RevokeRequest {
                    token: s(),
                    client_id: "svc".into(),
                    client_secret: s(),
                    client_assertion: s(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                sts::ExchangeRequest {
                    client_id: "svc".into(),
                    client_secret: s(),
                    subject_token: s(),
                    actor_token: s(),
                    client_assertion: s(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                sts::ExchangeResponse {
                    access_token: s(),
                    refresh_token: s(),
                    token_type: "N_A".into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                admin::RotateAdminCredentialResponse {
                    admin_credential: s()
                }
            ),
            format!(
                "{:?}",
                admin::CreateClientResponse {
                    client: Some(admin::Client {
                        client_id: "svc".into(),
                        ..Default::default()
                    }),
                    client_secret: s(),
                }
            ),
            format!(
                "{:?}",
                admin::RotateClientSecretResponse { client_secret: s() }
            ),
            format!(
                "{:?}",
                admin::CreateUserRequest {
                    username: "alice".into(),
                    password: s(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                admin::SetUserPasswordRequest {
                    username: "alice".into(),
                    password: s(),
                }
            ),
            format!(
                "{:?}",
                admin::AuthenticateClientRequest {
                    client_id: "svc".into(),
                    client_secret: s(),
                    client_assertion: s(),
                    ..Default::default()
                }
            ),
        ]
    }

    #[test]
    fn secrets_never_show_and_the_rest_does() {
        let all = debugged();
        assert_eq!(all.len(), SECRET_BEARING.len(), "one case per message");
        for d in &all {
            assert!(!d.contains(SECRET), "a secret shows: {d}");
            assert!(d.contains("<redacted>"), "{d}");
        }
        assert!(all[0].contains("refresh_token") && all[0].contains("\"svc\""));
        assert!(all[3].contains("WDJB-MJHT"), "the user code is for showing");
        assert!(
            all[9].contains("client_id: \"svc\""),
            "nested messages show"
        );
        // An empty secret says so: "was it sent?" is a fair question in a log.
        let empty = format!("{:?}", authz::IntrospectRequest::default());
        assert!(empty.contains("token: \"\""), "{empty}");
    }
}
