//! `writ.sts.v1.SecurityTokenService`: a thin transport over the exchange engine.

use std::sync::Arc;

use crate::Sts;
use tonic::{Request, Response, Status};
use writ_proto::sts::security_token_service_server::SecurityTokenService;
use writ_proto::sts::{
    ExchangeRequest, ExchangeResponse, GetJwksRequest, GetJwksResponse, GetServerMetadataRequest,
    GetServerMetadataResponse,
};

use writ_proto::refusal::status;

#[derive(Debug, Clone)]
pub struct StsGrpc {
    sts: Arc<Sts>,
}

impl StsGrpc {
    pub fn new(sts: Arc<Sts>) -> Self {
        StsGrpc { sts }
    }
}

#[tonic::async_trait]
impl SecurityTokenService for StsGrpc {
    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let r = request.into_inner();
        let resp = self
            .sts
            .exchange(writ_exchange::ExchangeRequest {
                grant_type: r.grant_type,
                client_id: r.client_id,
                client_secret: r.client_secret,
                client_assertion_type: r.client_assertion_type,
                client_assertion: r.client_assertion,
                audience: r.audience,
                resource: r.resource,
                scope: r.scope,
                requested_token_type: r.requested_token_type,
                subject_token: r.subject_token,
                subject_token_type: r.subject_token_type,
                actor_token: r.actor_token,
                actor_token_type: r.actor_token_type,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(ExchangeResponse {
            access_token: resp.access_token,
            issued_token_type: resp.issued_token_type.to_owned(),
            token_type: resp.token_type.to_owned(),
            expires_in: resp.expires_in,
            scope: resp.scope,
            refresh_token: String::new(),
        }))
    }

    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(self.sts.published_keys().into()))
    }

    async fn get_server_metadata(
        &self,
        _: Request<GetServerMetadataRequest>,
    ) -> Result<Response<GetServerMetadataResponse>, Status> {
        let m = self.sts.engine.metadata();
        Ok(Response::new(GetServerMetadataResponse {
            issuer: m.issuer,
            token_endpoint: m.token_endpoint,
            jwks_uri: m.jwks_uri,
            grant_types_supported: m.grant_types_supported,
            token_endpoint_auth_methods_supported: m.token_endpoint_auth_methods_supported,
            token_types_supported: m.token_types_supported,
        }))
    }
}
