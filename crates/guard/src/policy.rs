//! Which calls need what: a rule per gRPC method, per service, and a default.

use std::collections::HashMap;

/// What a call must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// No token needed (health checks).
    Public,
    /// A valid token carrying every one of these scopes (none: any valid token). For a Biscuit,
    /// each scope must also survive every attenuation block, and the service's Datalog policies
    /// must allow the request.
    Scopes(Vec<String>),
    /// A valid token carrying at least one of these scopes. For a Biscuit, one of them must
    /// survive every attenuation block and be allowed by the service's policies.
    AnyScope(Vec<String>),
    /// Refused whatever the token.
    Deny,
}

impl Rule {
    /// Every one of `scopes`.
    pub fn scopes(scopes: &[&str]) -> Rule {
        Rule::Scopes(scopes.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Any one of `scopes`.
    pub fn any_scope(scopes: &[&str]) -> Rule {
        Rule::AnyScope(scopes.iter().map(|s| (*s).to_owned()).collect())
    }

    /// The scopes the rule names (what an insufficient-scope refusal reports).
    pub fn required_scopes(&self) -> &[String] {
        match self {
            Rule::Scopes(s) | Rule::AnyScope(s) => s,
            Rule::Public | Rule::Deny => &[],
        }
    }
}

/// Rules by gRPC path. A method's own rule wins over its service's; anything unlisted gets the
/// default, which is [`Rule::Deny`]: a method added to a service is closed until a rule opens it.
/// gRPC health checking is public by default (it tells a load balancer nothing secret).
#[derive(Debug, Clone)]
pub struct MethodPolicy {
    methods: HashMap<String, Rule>,
    services: HashMap<String, Rule>,
    default: Rule,
}

impl Default for MethodPolicy {
    fn default() -> Self {
        MethodPolicy::new()
    }
}

impl MethodPolicy {
    pub fn new() -> Self {
        MethodPolicy {
            methods: HashMap::new(),
            services: HashMap::from([("grpc.health.v1.Health".to_owned(), Rule::Public)]),
            default: Rule::Deny,
        }
    }

    /// `path` is `/package.Service/Method`.
    pub fn method(mut self, path: &str, rule: Rule) -> Self {
        self.methods.insert(path.to_owned(), rule);
        self
    }

    /// Every method of `service` (`package.Service`) without a rule of its own.
    pub fn service(mut self, service: &str, rule: Rule) -> Self {
        self.services.insert(service.to_owned(), rule);
        self
    }

    /// Every method of the generated service `S` (its `NamedService::NAME`) without a rule of
    /// its own: `.service_of::<InventoryServiceServer<Inventory>>(rule)`.
    pub fn service_of<S: tonic::server::NamedService>(self, rule: Rule) -> Self {
        self.service(S::NAME, rule)
    }

    /// The method `method` (as in the proto, `Reserve`) of the generated service `S`:
    /// `.method_of::<InventoryServiceServer<Inventory>>("Reserve", rule)`.
    pub fn method_of<S: tonic::server::NamedService>(self, method: &str, rule: Rule) -> Self {
        let path = format!("/{}/{method}", S::NAME);
        self.method(&path, rule)
    }

    /// The rule for anything unlisted.
    pub fn otherwise(mut self, rule: Rule) -> Self {
        self.default = rule;
        self
    }

    /// The rule for a call to `path`.
    pub fn rule(&self, path: &str) -> &Rule {
        if let Some(r) = self.methods.get(path) {
            return r;
        }
        let service = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(s, _)| s);
        service
            .and_then(|s| self.services.get(s))
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_rule_wins_over_its_service_and_the_rest_is_denied() {
        let p = MethodPolicy::new()
            .service("demo.Inventory", Rule::scopes(&["inventory.read"]))
            .method(
                "/demo.Inventory/Reserve",
                Rule::scopes(&["inventory.write"]),
            );
        assert_eq!(
            p.rule("/demo.Inventory/Reserve"),
            &Rule::scopes(&["inventory.write"])
        );
        assert_eq!(
            p.rule("/demo.Inventory/Get"),
            &Rule::scopes(&["inventory.read"])
        );
        assert_eq!(p.rule("/demo.Orders/Place"), &Rule::Deny);
        assert_eq!(p.rule("garbage"), &Rule::Deny);
        assert_eq!(p.rule("/grpc.health.v1.Health/Check"), &Rule::Public);
    }

    #[test]
    fn generated_services_name_their_methods() {
        #[derive(Clone)]
        struct Inventory;
        impl tonic::server::NamedService for Inventory {
            const NAME: &'static str = "demo.Inventory";
        }
        let p = MethodPolicy::new()
            .service_of::<Inventory>(Rule::scopes(&["read"]))
            .method_of::<Inventory>("Reserve", Rule::any_scope(&["write", "admin"]));
        assert_eq!(
            p.rule("/demo.Inventory/Reserve"),
            &Rule::any_scope(&["write", "admin"])
        );
        assert_eq!(p.rule("/demo.Inventory/Get"), &Rule::scopes(&["read"]));
    }
}
