//! The tonic interceptor: one rule for every method of the service it wraps, decided
//! synchronously (an interceptor cannot wait).

use super::Guard;
use crate::policy::Rule;

/// Tonic interceptor: see [`Guard::interceptor`].
#[derive(Debug, Clone)]
pub struct GuardInterceptor {
    pub(super) guard: Guard,
    pub(super) rule: Rule,
}

impl tonic::service::Interceptor for GuardInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        let started = super::sampled_start();
        let decision = self.guard.decide_without_waiting(&self.rule, authorization);
        self.guard.audit(None, authorization, started, &decision);
        if let Some(v) = decision? {
            request.extensions_mut().insert(v.principal.clone());
            request.extensions_mut().insert(v.bearer.clone());
            request.extensions_mut().insert(v.clone());
        }
        Ok(request)
    }
}
