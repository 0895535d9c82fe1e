//! The adapters that let the services of one process talk to the authorization server's engine
//! directly (`writ up`): the STS's client directory and the watch tokens of in-process
//! subscribers. Run apart, the same roles are played over gRPC (`writ_sts::directory`,
//! `writ_client::TokenSource`).

use std::sync::Arc;

use tonic::Status;
use writ_client::BearerSource;
use writ_exchange::{BoxFuture, Directory, ExchangeError, ExchangePolicy};
use writ_oauth::AuthorizationServer;
use writ_vocabulary::names::{REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE};

/// The authorization server's clients and exchange policies, read directly.
#[derive(Debug, Clone)]
pub struct LocalDirectory(pub Arc<AuthorizationServer>);

fn engine_error(e: writ_oauth::Error) -> ExchangeError {
    match e {
        writ_oauth::Error::InvalidClient => ExchangeError::InvalidClient,
        // The caller's request, not the directory, is at fault.
        writ_oauth::Error::InvalidRequest(m) => ExchangeError::InvalidRequest(m),
        // A client whose tokens must be bound (to a certificate, to a DPoP key), which an
        // exchange cannot do: its answer, not a failure of the directory.
        writ_oauth::Error::UnauthorizedClient(m) => ExchangeError::UnauthorizedClient(m),
        other => {
            tracing::error!(error = %other, "the client directory failed");
            ExchangeError::Unavailable("the client directory is unavailable")
        }
    }
}

impl Directory for LocalDirectory {
    fn authenticate<'a>(
        &'a self,
        c: writ_exchange::Credentials<'a>,
    ) -> BoxFuture<'a, writ_exchange::Result<()>> {
        Box::pin(async move {
            let presented = writ_oauth::ClientCredentials {
                client_id: c.client_id.to_owned(),
                client_secret: c.client_secret.to_owned(),
                client_assertion_type: c.client_assertion_type.to_owned(),
                client_assertion: c.client_assertion.to_owned(),
                client_certificate: None,
            };
            self.0
                .authenticate_exchange_client(&presented, c.audiences)
                .await
                .map_err(engine_error)
        })
    }

    fn policies<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, writ_exchange::Result<Vec<ExchangePolicy>>> {
        Box::pin(async move {
            self.0
                .exchange_policies_of(client_id)
                .await
                .map_err(engine_error)
        })
    }
}

/// Watch tokens the in-process authorization server mints for a subscriber in the same process
/// (the STS under `writ up`).
#[derive(Debug, Clone)]
pub struct EngineTokens(pub Arc<AuthorizationServer>);

impl BearerSource for EngineTokens {
    fn bearer(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<str>, Status>> + Send + '_>>
    {
        let minted = self
            .0
            .service_token(REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE)
            .map(|(t, _)| Arc::from(t))
            .map_err(|e| Status::internal(e.to_string()));
        Box::pin(async move { minted })
    }
}
