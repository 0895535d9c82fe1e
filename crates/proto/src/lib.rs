//! Writ's wire: the gRPC contract generated from `proto/writ/<area>/v1/*.proto`, the
//! conversions between its messages and the domain types ([`convert`]), and how a refusal looks
//! as a gRPC status and as RFC 6749 JSON ([`refusal`]).
//!
//! Each package is re-exported under a short name (`authz`, `sts`, `revocation`, `admin`,
//! `common`), as `tonic-health` does with its `pb` module.

pub mod convert;
mod redact;
pub mod refusal;

#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod writ {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("writ.common.v1");
        }
    }
    pub mod authz {
        pub mod v1 {
            tonic::include_proto!("writ.authz.v1");
        }
    }
    pub mod sts {
        pub mod v1 {
            tonic::include_proto!("writ.sts.v1");
        }
    }
    pub mod revocation {
        pub mod v1 {
            tonic::include_proto!("writ.revocation.v1");
        }
    }
    pub mod admin {
        pub mod v1 {
            tonic::include_proto!("writ.admin.v1");
        }
    }
}

pub use writ::admin::v1 as admin;
pub use writ::authz::v1 as authz;
pub use writ::common::v1 as common;
pub use writ::revocation::v1 as revocation;
pub use writ::sts::v1 as sts;

pub use redact::SECRET_BEARING;

/// The encoded `FileDescriptorSet` of every Writ proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/writ_descriptor.bin"));

/// Envoy's external authorization API (`envoy.service.auth.v3.Authorization`), generated from
/// Envoy's published protos (vendored under `third_party/envoy-api` with their license): what
/// the gateway serves to Envoy's `ext_authz` filter. Each package keeps its own path, so the
/// generated code's references between them hold.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod envoy_api {
    pub mod envoy {
        pub mod config {
            pub mod core {
                pub mod v3 {
                    tonic::include_proto!("envoy.config.core.v3");
                }
            }
        }
        pub mod r#type {
            pub mod v3 {
                tonic::include_proto!("envoy.r#type.v3");
            }
        }
        pub mod service {
            pub mod auth {
                pub mod v3 {
                    tonic::include_proto!("envoy.service.auth.v3");
                }
            }
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
    pub mod udpa {
        pub mod annotations {
            tonic::include_proto!("udpa.annotations");
        }
    }
    pub mod validate {
        tonic::include_proto!("validate");
    }
    pub mod xds {
        pub mod annotations {
            pub mod v3 {
                tonic::include_proto!("xds.annotations.v3");
            }
        }
        pub mod core {
            pub mod v3 {
                tonic::include_proto!("xds.core.v3");
            }
        }
    }

    pub use envoy::service::auth::v3 as auth;

    /// The encoded `FileDescriptorSet` of these protos, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));
}
