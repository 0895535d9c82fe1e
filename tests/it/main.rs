//! Writ's integration tests: one binary, real services on loopback ports, driven over gRPC and
//! HTTP. Each test says in its name what it proves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod audit;
mod cli;
mod client_keys;
mod dpop;
mod gateway;
mod grants;
mod guard;
mod http_facade;
mod interop;
mod introspection;
mod keys;
mod mtls;
mod oidc_interop;
mod plumbing;
mod refresh;
mod replicas;
mod revocation;
mod revocation_robustness;
mod signin;
mod signin_browser;
mod signin_device;
mod sts;
mod verification;
mod workloads;
