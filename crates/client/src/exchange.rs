//! Propagation: a service calling another on behalf of its caller trades the caller's token at
//! the STS (RFC 8693) for one naming the next service, instead of passing it on as it is.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use siphasher::sip128::{Hasher128, SipHasher13};
use tonic::Status;
use tonic::transport::Channel;
use writ_proto::sts::ExchangeRequest;
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_vocabulary::{grant_type, looks_like_jwt, token_type};

use crate::bearer::BearerToken;
use crate::source::{ClientCredentials, Held};

/// Most exchanged tokens kept.
const CAPACITY: usize = 10_000;

#[derive(Debug)]
struct Cache {
    entries: HashMap<(u128, String, String), Held>,
}

/// Exchanges incoming tokens at the STS, caching each result per (subject token, audience,
/// scope) until it is due for renewal. Cheap to clone.
#[derive(Clone)]
pub struct Exchanger {
    client: SecurityTokenServiceClient<Channel>,
    /// The calling service's own client credentials (it is the actor).
    credentials: Arc<ClientCredentials>,
    cache: Arc<Mutex<Cache>>,
    keys: (u64, u64),
}

impl std::fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanger")
            .field("client_id", &self.credentials.client_id)
            .finish_non_exhaustive()
    }
}

impl Exchanger {
    /// `channel` reaches the STS; `credentials` authenticate this service there (`scope` and
    /// `audience` in them are unused).
    pub fn new(channel: Channel, credentials: ClientCredentials) -> Exchanger {
        let mut k = [0u8; 16];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut k).expect("the OS random source works");
        let (a, b) = k.split_at(8);
        Exchanger {
            client: SecurityTokenServiceClient::new(channel),
            credentials: Arc::new(credentials),
            cache: Arc::new(Mutex::new(Cache {
                entries: HashMap::new(),
            })),
            keys: (
                u64::from_le_bytes(a.try_into().unwrap_or_default()),
                u64::from_le_bytes(b.try_into().unwrap_or_default()),
            ),
        }
    }

    /// A token for `audience` with `scope` (space-delimited; empty keeps the subject's), on
    /// behalf of the caller of `incoming` (its token as the guard attached it).
    pub async fn for_request<T>(
        &self,
        incoming: &tonic::Request<T>,
        audience: &str,
        scope: &str,
    ) -> Result<Arc<str>, Status> {
        let subject = BearerToken::of(incoming)
            .ok_or_else(|| Status::unauthenticated("the call carries no verified token"))?;
        self.exchange(&subject.0, audience, scope).await
    }

    /// A token for `audience` with `scope`, exchanged for `subject_token`.
    pub async fn exchange(
        &self,
        subject_token: &str,
        audience: &str,
        scope: &str,
    ) -> Result<Arc<str>, Status> {
        let key = (
            self.hash(subject_token),
            audience.to_owned(),
            scope.to_owned(),
        );
        let now = Instant::now();
        if let Some(h) = self.cache.lock().entries.get(&key).filter(|h| h.fresh(now)) {
            return Ok(h.token.clone());
        }
        let subject_token_type = if looks_like_jwt(subject_token) {
            token_type::ACCESS_TOKEN
        } else {
            token_type::BISCUIT
        };
        let (client_secret, client_assertion_type, client_assertion) =
            self.credentials.presented()?;
        let response = self
            .client
            .clone()
            .exchange(ExchangeRequest {
                grant_type: grant_type::TOKEN_EXCHANGE.into(),
                client_id: self.credentials.client_id.clone(),
                client_secret,
                client_assertion_type,
                client_assertion,
                audience: vec![audience.to_owned()],
                scope: scope.to_owned(),
                subject_token: subject_token.to_owned(),
                subject_token_type: subject_token_type.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let held = Held::new(response.access_token, response.expires_in, "Bearer")?;
        let token = held.token.clone();
        let mut cache = self.cache.lock();
        if cache.entries.len() >= CAPACITY {
            cache.entries.retain(|_, h| h.fresh(now));
            if cache.entries.len() >= CAPACITY {
                cache.entries.clear();
            }
        }
        cache.entries.insert(key, held);
        Ok(token)
    }

    fn hash(&self, token: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }
}
