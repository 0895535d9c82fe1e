//! Protobuf messages to and from the engine's types.

use prost_types::Timestamp;
use tonic::Status;
use writ_keyring::{KeyInfo, KeyPurpose, KeyStatus};
use writ_oauth::{
    Client, ClientType, Error, FormatChoice, Introspection, IssuedFormat, ServerMetadata, User,
};
use writ_proto::{admin, authz, common};

pub fn format_choice(value: i32) -> Result<FormatChoice, Error> {
    match common::TokenFormat::try_from(value) {
        Ok(common::TokenFormat::Unspecified) => Ok(FormatChoice::Default),
        Ok(common::TokenFormat::Jwt) => Ok(FormatChoice::Jwt),
        Ok(common::TokenFormat::Biscuit) => Ok(FormatChoice::Biscuit),
        Ok(common::TokenFormat::JwtAndBiscuit) => Ok(FormatChoice::JwtAndBiscuit),
        Ok(common::TokenFormat::Reference) => Ok(FormatChoice::Reference),
        Err(_) => Err(Error::InvalidRequest("unknown token_format")),
    }
}

pub fn token_request(r: authz::TokenRequest) -> Result<writ_oauth::TokenRequest, Error> {
    Ok(writ_oauth::TokenRequest {
        // Filled in by the handler, which knows the peer.
        source: None,
        // Filled in by the handler, which sees the `dpop` metadata and the call's URL.
        dpop: None,
        dpop_jkt: String::new(),
        dpop_jti: String::new(),
        client_certificate: None,
        cert_x5t: String::new(),
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
        code: r.code,
        redirect_uri: r.redirect_uri,
        code_verifier: r.code_verifier,
        device_code: r.device_code,
        client_assertion_type: r.client_assertion_type,
        client_assertion: r.client_assertion,
        assertion: r.assertion,
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
        id_token: r.id_token.unwrap_or_default(),
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
        cnf_jkt: i.cnf_jkt,
        cnf_x5t_s256: i.cnf_x5t_s256,
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
        introspection_endpoint_auth_methods_supported: m
            .introspection_endpoint_auth_methods_supported,
        revocation_endpoint_auth_methods_supported: m.revocation_endpoint_auth_methods_supported,
        token_endpoint_auth_methods_supported: m.token_endpoint_auth_methods_supported,
        token_endpoint_auth_signing_alg_values_supported: m
            .token_endpoint_auth_signing_alg_values_supported,
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

pub fn client(c: Client) -> admin::Client {
    admin::Client {
        create_time: timestamp(c.created_at),
        client_id: c.client_id,
        client_name: c.client_name,
        client_type: match c.client_type {
            ClientType::Confidential => admin::ClientType::Confidential as i32,
            ClientType::Public => admin::ClientType::Public as i32,
        },
        grant_types: c.grant_types,
        scope: c.scope,
        audience: c.audience,
        access_token_lifetime: c.access_token_lifetime,
        refresh_token_lifetime: c.refresh_token_lifetime,
        token_formats: c.token_formats.into_iter().map(format_value).collect(),
        default_token_format: c.default_token_format.map_or(0, format_value),
        may_introspect: c.may_introspect,
        disabled: c.disabled,
        redirect_uris: c.redirect_uris,
        post_logout_redirect_uris: c.post_logout_redirect_uris,
        require_pushed_authorization_requests: c.require_pushed_authorization_requests,
        backchannel_logout_uri: c.backchannel_logout_uri,
        token_endpoint_auth_method: c.token_endpoint_auth_method,
        jwks: c.jwks,
        jwks_uri: c.jwks_uri,
        tls_client_certificate_bound_access_tokens: c.tls_client_certificate_bound_access_tokens,
        dpop_bound_access_tokens: c.dpop_bound_access_tokens,
        tls_client_auth_san_dns: c.tls_client_auth_san_dns,
        tls_client_auth_san_uri: c.tls_client_auth_san_uri,
        tls_client_auth_san_ip: c.tls_client_auth_san_ip,
        tls_client_auth_san_email: c.tls_client_auth_san_email,
        tls_client_auth_subject_dn: c.tls_client_auth_subject_dn,
    }
}

fn format_value(f: IssuedFormat) -> i32 {
    let f = match f {
        IssuedFormat::Jwt => common::TokenFormat::Jwt,
        IssuedFormat::Biscuit => common::TokenFormat::Biscuit,
        IssuedFormat::JwtAndBiscuit => common::TokenFormat::JwtAndBiscuit,
        IssuedFormat::Reference => common::TokenFormat::Reference,
    };
    f as i32
}

/// A client as the admin API was sent it; unknown enum values are refused.
pub fn client_spec(c: admin::Client) -> Result<Client, Status> {
    let bad = |m| writ_proto::refusal::status(Error::InvalidRequest(m));
    let issued = |v: i32| match format_choice(v) {
        Ok(FormatChoice::Jwt) => Ok(Some(IssuedFormat::Jwt)),
        Ok(FormatChoice::Biscuit) => Ok(Some(IssuedFormat::Biscuit)),
        Ok(FormatChoice::JwtAndBiscuit) => Ok(Some(IssuedFormat::JwtAndBiscuit)),
        Ok(FormatChoice::Reference) => Ok(Some(IssuedFormat::Reference)),
        Ok(FormatChoice::Default) => Ok(None),
        Err(_) => Err(bad("unknown token format")),
    };
    let client_type = match admin::ClientType::try_from(c.client_type) {
        Ok(admin::ClientType::Unspecified | admin::ClientType::Confidential) => {
            ClientType::Confidential
        }
        Ok(admin::ClientType::Public) => ClientType::Public,
        Err(_) => return Err(bad("client_type must be confidential or public")),
    };
    let mut token_formats = Vec::with_capacity(c.token_formats.len());
    for f in c.token_formats {
        token_formats.push(issued(f)?.ok_or_else(|| bad("unknown token format"))?);
    }
    Ok(Client {
        client_id: c.client_id,
        client_name: c.client_name,
        client_type,
        grant_types: c.grant_types,
        scope: c.scope,
        audience: c.audience,
        access_token_lifetime: c.access_token_lifetime,
        refresh_token_lifetime: c.refresh_token_lifetime,
        token_formats,
        default_token_format: issued(c.default_token_format)?,
        may_introspect: c.may_introspect,
        disabled: c.disabled,
        created_at: 0,
        redirect_uris: c.redirect_uris,
        post_logout_redirect_uris: c.post_logout_redirect_uris,
        require_pushed_authorization_requests: c.require_pushed_authorization_requests,
        backchannel_logout_uri: c.backchannel_logout_uri,
        token_endpoint_auth_method: c.token_endpoint_auth_method,
        jwks: c.jwks,
        jwks_uri: c.jwks_uri,
        tls_client_certificate_bound_access_tokens: c.tls_client_certificate_bound_access_tokens,
        dpop_bound_access_tokens: c.dpop_bound_access_tokens,
        tls_client_auth_san_dns: c.tls_client_auth_san_dns,
        tls_client_auth_san_uri: c.tls_client_auth_san_uri,
        tls_client_auth_san_ip: c.tls_client_auth_san_ip,
        tls_client_auth_san_email: c.tls_client_auth_san_email,
        tls_client_auth_subject_dn: c.tls_client_auth_subject_dn,
    })
}

pub fn user(u: User) -> admin::User {
    admin::User {
        create_time: timestamp(u.created_at),
        username: u.username,
        subject: u.subject,
        scope: u.scope,
        disabled: u.disabled,
    }
}

pub fn session(s: writ_oauth::SessionInfo) -> admin::Session {
    admin::Session {
        sid: s.sid,
        auth_time: timestamp(s.auth_time),
        create_time: timestamp(s.created_at),
        expire_time: timestamp(s.expires_at),
        amr: s.amr,
        client_ids: s.client_ids,
    }
}

pub fn signing_key(k: KeyInfo) -> admin::SigningKey {
    admin::SigningKey {
        create_time: timestamp(k.created_at),
        retire_time: timestamp(k.retired_at),
        expire_time: timestamp(k.expires_at),
        kid: k.kid,
        purpose: match k.purpose {
            KeyPurpose::Jwt => admin::KeyPurpose::Jwt as i32,
            KeyPurpose::Biscuit => admin::KeyPurpose::Biscuit as i32,
        },
        alg: k.alg,
        status: match k.status {
            KeyStatus::Active => admin::KeyStatus::Active as i32,
            KeyStatus::Retired => admin::KeyStatus::Retired as i32,
        },
    }
}

pub fn audit_event(r: &writ_audit::AuditRecord) -> writ_proto::admin::AuditEvent {
    writ_proto::admin::AuditEvent {
        sequence: r.seq,
        time: Some(Timestamp {
            seconds: r.time_ms.div_euclid(1000),
            // Below a billion: a remainder of milliseconds.
            nanos: i32::try_from(r.time_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        service: r.service.clone(),
        event_type: r.kind.clone(),
        outcome: r.outcome.clone(),
        actor: r.actor.clone(),
        client_id: r.client_id.clone(),
        subject: r.subject.clone(),
        gid: r.gid.clone(),
        audience: r.audience.clone(),
        reason: r.reason.clone(),
        details: r.details.clone().into_iter().collect(),
        hash: hex::encode(writ_audit::record_hash(r)),
    }
}

pub fn workload_issuer(i: writ_oauth::WorkloadIssuer) -> admin::WorkloadIssuer {
    admin::WorkloadIssuer {
        issuer: i.issuer,
        jwks: i.jwks,
        jwks_uri: i.jwks_uri,
        audience: i.audience,
        max_token_lifetime: i.max_token_lifetime,
        single_use: i.single_use,
        policies: i.policies.into_iter().map(workload_policy).collect(),
        create_time: timestamp(i.created_at),
    }
}

pub fn workload_issuer_from(i: admin::WorkloadIssuer) -> writ_oauth::WorkloadIssuer {
    writ_oauth::WorkloadIssuer {
        issuer: i.issuer,
        jwks: i.jwks,
        jwks_uri: i.jwks_uri,
        audience: i.audience,
        max_token_lifetime: i.max_token_lifetime,
        single_use: i.single_use,
        policies: i.policies.into_iter().map(workload_policy_from).collect(),
        // Set by the server.
        created_at: 0,
    }
}

pub fn workload_policy(p: writ_oauth::WorkloadPolicy) -> admin::WorkloadPolicy {
    admin::WorkloadPolicy {
        policy_id: p.policy_id,
        subject: p.subject,
        client_id: p.client_id,
        scope: p.scope,
        audience: p.audience,
    }
}

pub fn workload_policy_from(p: admin::WorkloadPolicy) -> writ_oauth::WorkloadPolicy {
    writ_oauth::WorkloadPolicy {
        policy_id: p.policy_id,
        subject: p.subject,
        client_id: p.client_id,
        scope: p.scope,
        audience: p.audience,
    }
}
