//! The tonic interceptor: one rule for every method of the service it wraps, decided
//! synchronously (an interceptor cannot wait).

use super::{Guard, Presented};
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
        // The interceptor does not see the call's URL, so it cannot check a DPoP proof: a
        // bound token is refused here (the layer takes it).
        let certs = super::client_certificates(request.extensions());
        let presented = Presented::of(request.metadata().as_ref(), None, super::leaf(&certs));
        let started = super::sampled_start();
        let decision = self.guard.decide_without_waiting(&self.rule, &presented);
        self.guard
            .audit(None, presented.authorization, started, &decision);
        if let Some(v) = decision? {
            request.extensions_mut().insert(v.principal.clone());
            request.extensions_mut().insert(v.bearer.clone());
            request.extensions_mut().insert(v.clone());
        }
        Ok(request)
    }
}
