//! `writ.authz.v1.AuthorizationService`: a thin transport over the engine.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use writ_oauth::{AuthorizationServer, ClientCredentials, TokenOperation};
use writ_proto::authz::authorization_service_server::AuthorizationService;
use writ_proto::authz::{
    DeviceAuthorizationRequest, DeviceAuthorizationResponse, GetJwksRequest, GetJwksResponse,
    GetServerMetadataRequest, GetServerMetadataResponse, IntrospectRequest, IntrospectResponse,
    RevokeRequest, RevokeResponse, TokenRequest, TokenResponse,
};

use crate::convert;
use writ_proto::refusal::status;

#[derive(Debug, Clone)]
pub struct AuthorizationGrpc {
    engine: Arc<AuthorizationServer>,
}

impl AuthorizationGrpc {
    pub fn new(engine: Arc<AuthorizationServer>) -> Self {
        AuthorizationGrpc { engine }
    }
}

/// The JWKS and Biscuit root keys the engine publishes now.
pub async fn jwks(engine: &AuthorizationServer) -> Result<GetJwksResponse, Status> {
    let (jwt, biscuit) = engine.published_keys().await.map_err(status)?;
    Ok(writ_proto::convert::PublishedKeys::new(&jwt, &biscuit).into())
}

/// A client's credentials as a request's fields carry them (RFC 6749 section 2.3, RFC 7521
/// section 4.2).
fn credentials(
    client_id: String,
    client_secret: String,
    client_assertion_type: String,
    client_assertion: String,
    client_certificate: Option<Vec<u8>>,
) -> ClientCredentials {
    ClientCredentials {
        client_id,
        client_secret,
        client_assertion_type,
        client_assertion,
        client_certificate,
    }
}

/// The leaf TLS client certificate (DER) of the connection a call came on (RFC 8705).
fn client_certificate<T>(request: &Request<T>) -> Option<Vec<u8>> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
}

/// RFC 7662 and RFC 7009 requests carry the same parameters (two messages with the same
/// fields), and the connection's certificate.
macro_rules! operation {
    ($request:expr) => {{
        let certificate = client_certificate(&$request);
        let r = $request.into_inner();
        TokenOperation {
            token: r.token,
            token_type_hint: r.token_type_hint,
            client: credentials(
                r.client_id,
                r.client_secret,
                r.client_assertion_type,
                r.client_assertion,
                certificate,
            ),
        }
    }};
}

/// A token request's DPoP proof in Writ's gRPC profile (`docs/dpop-grpc.md`): the `dpop`
/// metadata (several values joined with commas, which no proof holds, so they are refused), over
/// `POST` and the call's URL as this server received it.
fn dpop_request<T>(request: &Request<T>) -> Option<writ_oauth::DpopRequest> {
    let proofs: Vec<&str> = request
        .metadata()
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    (!proofs.is_empty()).then(|| writ_oauth::DpopRequest {
        proof: proofs.join(","),
        htm: writ_token::GRPC_HTM.to_owned(),
        // Unknown, it names no URL a proof can match: refused, never skipped.
        htu: request
            .extensions()
            .get::<writ_server::RequestUri>()
            .and_then(|u| writ_token::grpc_htu(&u.0))
            .unwrap_or_default(),
    })
}

#[tonic::async_trait]
impl AuthorizationService for AuthorizationGrpc {
    async fn token(
        &self,
        request: Request<TokenRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let source = request.remote_addr().map(|a| a.ip());
        let dpop = dpop_request(&request);
        let certificate = client_certificate(&request);
        let mut req = convert::token_request(request.into_inner()).map_err(status)?;
        req.source = source;
        req.dpop = dpop;
        req.client_certificate = certificate;
        let resp = match self.engine.token(req).await {
            Ok(r) => r,
            // RFC 9449 section 8, over gRPC: the refusal carries the nonce to use.
            Err(e @ writ_oauth::Error::UseDpopNonce) => {
                let mut refused = status(e);
                if let Ok(nonce) = self.engine.dpop_nonce().parse() {
                    refused.metadata_mut().insert("dpop-nonce", nonce);
                }
                return Err(refused);
            }
            Err(e) => return Err(status(e)),
        };
        Ok(Response::new(convert::token_response(resp)))
    }

    async fn device_authorization(
        &self,
        request: Request<DeviceAuthorizationRequest>,
    ) -> Result<Response<DeviceAuthorizationResponse>, Status> {
        let source = request.remote_addr().map(|a| a.ip());
        let certificate = client_certificate(&request);
        let r = request.into_inner();
        let client = credentials(
            r.client_id,
            r.client_secret,
            r.client_assertion_type,
            r.client_assertion,
            certificate,
        );
        let d = self
            .engine
            .device_authorization(&client, &r.scope, r.audience, r.resource, source)
            .await
            .map_err(status)?;
        Ok(Response::new(DeviceAuthorizationResponse {
            device_code: d.device_code,
            user_code: d.user_code,
            verification_uri: d.verification_uri,
            verification_uri_complete: d.verification_uri_complete,
            expires_in: d.expires_in,
            interval: d.interval,
        }))
    }

    async fn introspect(
        &self,
        request: Request<IntrospectRequest>,
    ) -> Result<Response<IntrospectResponse>, Status> {
        let op = operation!(request);
        let result = self.engine.introspect(op).await.map_err(status)?;
        Ok(Response::new(convert::introspection(result)))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let op = operation!(request);
        self.engine.revoke(op).await.map_err(status)?;
        Ok(Response::new(RevokeResponse {}))
    }

    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(jwks(&self.engine).await?))
    }

    async fn get_server_metadata(
        &self,
        _: Request<GetServerMetadataRequest>,
    ) -> Result<Response<GetServerMetadataResponse>, Status> {
        Ok(Response::new(convert::metadata(self.engine.metadata())))
    }
}
