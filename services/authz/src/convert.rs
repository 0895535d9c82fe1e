//! Protobuf messages to and from the engine's types.

use prost_types::Timestamp;
use writ_oauth::records::{ClientRecord, ExchangePolicyRecord, SigningKeyRecord, UserRecord};
use writ_oauth::{Error, FormatChoice, Introspection, ServerMetadata};
use writ_proto::{admin, authz, common};

pub fn format_choice(value: i32) -> Result<FormatChoice, Error> {
    match common::TokenFormat::try_from(value) {
        Ok(common::TokenFormat::Unspecified) => Ok(FormatChoice::Default),
        Ok(common::TokenFormat::Jwt) => Ok(FormatChoice::Jwt),
        Ok(common::TokenFormat::Biscuit) => Ok(FormatChoice::Biscuit),
        Ok(common::TokenFormat::JwtAndBiscuit) => Ok(FormatChoice::JwtAndBiscuit),
        Err(_) => Err(Error::InvalidRequest("unknown token_format")),
    }
}

pub fn token_request(r: authz::TokenRequest) -> Result<writ_oauth::TokenRequest, Error> {
    Ok(writ_oauth::TokenRequest {
        token_format: format_choice(r.token_format)?,
        grant_type: r.grant_type,
        client_id: r.client_id,
        client_secret: r.client_secret,
        scope: r.scope,
        refresh_token: r.refresh_token,
        username: r.username,
        password: r.password,
        audience: r.audience,
        resource: r.resource,
    })
}

pub fn token_response(r: writ_oauth::TokenResponse) -> authz::TokenResponse {
    authz::TokenResponse {
        access_token: r.access_token,
        token_type: r.token_type.to_owned(),
        expires_in: r.expires_in,
        refresh_token: r.refresh_token.unwrap_or_default(),
        scope: r.scope,
        issued_token_type: r.issued_token_type.to_owned(),
        biscuit: r.biscuit.unwrap_or_default(),
    }
}

pub fn introspection(i: Introspection) -> authz::IntrospectResponse {
    if !i.active {
        return authz::IntrospectResponse::default();
    }
    authz::IntrospectResponse {
        active: true,
        act: i.act.as_ref().map(writ_proto::convert::actor),
        token_format: i
            .format
            .map_or(0, |f| writ_proto::convert::token_format(f) as i32),
        scope: i.scope,
        client_id: i.client_id,
        username: i.username,
        token_type: i.token_type,
        exp: i.exp,
        iat: i.iat,
        nbf: i.nbf,
        sub: i.sub,
        aud: i.aud,
        iss: i.iss,
        jti: i.jti,
        gid: i.gid,
    }
}

pub fn metadata(m: ServerMetadata) -> authz::GetServerMetadataResponse {
    authz::GetServerMetadataResponse {
        issuer: m.issuer,
        token_endpoint: m.token_endpoint,
        jwks_uri: m.jwks_uri,
        introspection_endpoint: m.introspection_endpoint,
        revocation_endpoint: m.revocation_endpoint,
        grant_types_supported: m.grant_types_supported,
        introspection_endpoint_auth_methods_supported: m.token_endpoint_auth_methods_supported[..2]
            .to_vec(),
        revocation_endpoint_auth_methods_supported: m.token_endpoint_auth_methods_supported.clone(),
        token_endpoint_auth_methods_supported: m.token_endpoint_auth_methods_supported,
        scopes_supported: m.scopes_supported,
        response_types_supported: m.response_types_supported,
        access_token_signing_alg_values_supported: m.access_token_signing_alg_values_supported,
        token_types_supported: m.token_types_supported,
    }
}

pub fn timestamp(secs: i64) -> Option<Timestamp> {
    (secs > 0).then_some(Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

pub fn client(c: ClientRecord) -> admin::Client {
    admin::Client {
        create_time: timestamp(c.created_at),
        client_id: c.client_id,
        client_name: c.client_name,
        client_type: c.client_type,
        grant_types: c.grant_types,
        scope: c.scope,
        audience: c.audience,
        access_token_lifetime: c.access_token_lifetime,
        refresh_token_lifetime: c.refresh_token_lifetime,
        token_formats: c.token_formats,
        default_token_format: c.default_token_format,
        may_introspect: c.may_introspect,
        disabled: c.disabled,
        // The secret hash never leaves the server.
    }
}

pub fn client_record(c: admin::Client) -> ClientRecord {
    ClientRecord {
        client_id: c.client_id,
        client_name: c.client_name,
        client_type: c.client_type,
        secret_hash: Vec::new(),
        grant_types: c.grant_types,
        scope: c.scope,
        audience: c.audience,
        access_token_lifetime: c.access_token_lifetime,
        refresh_token_lifetime: c.refresh_token_lifetime,
        token_formats: c.token_formats,
        default_token_format: c.default_token_format,
        may_introspect: c.may_introspect,
        disabled: c.disabled,
        created_at: 0,
    }
}

pub fn user(u: UserRecord) -> admin::User {
    admin::User {
        create_time: timestamp(u.created_at),
        username: u.username,
        subject: u.subject,
        scope: u.scope,
        disabled: u.disabled,
    }
}

pub fn signing_key(k: SigningKeyRecord) -> admin::SigningKey {
    admin::SigningKey {
        create_time: timestamp(k.created_at),
        retire_time: timestamp(k.retired_at),
        expire_time: timestamp(k.expires_at),
        kid: k.kid,
        purpose: k.purpose,
        alg: k.alg,
        status: k.status,
    }
}

pub fn policy(p: ExchangePolicyRecord) -> admin::ExchangePolicy {
    admin::ExchangePolicy {
        policy_id: p.policy_id,
        client_id: p.client_id,
        audience: p.audience,
        scope: p.scope,
        max_lifetime: p.max_lifetime,
        allow_impersonation: p.allow_impersonation,
        max_chain_depth: p.max_chain_depth,
    }
}

pub fn policy_record(p: admin::ExchangePolicy) -> ExchangePolicyRecord {
    ExchangePolicyRecord {
        policy_id: p.policy_id,
        client_id: p.client_id,
        audience: p.audience,
        scope: p.scope,
        max_lifetime: p.max_lifetime,
        allow_impersonation: p.allow_impersonation,
        max_chain_depth: p.max_chain_depth,
    }
}
