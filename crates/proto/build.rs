//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no `protoc`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "writ/common/v1/common.proto",
    "writ/authz/v1/authz.proto",
    "writ/sts/v1/sts.proto",
    "writ/revocation/v1/revocation.proto",
    "writ/admin/v1/admin.proto",
];

include!("src/secret_bearing.rs");

const ENVOY_EXT_AUTHZ: &str = "envoy/service/auth/v3/external_auth.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let fds = protox::compile(PROTOS, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Server reflection serves this descriptor set, so grpcurl and friends work unconfigured.
    std::fs::write(
        out.join("writ_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Their `Debug` redacts credentials (src/redact.rs).
        .skip_debug(SECRET_BEARING.iter().copied())
        .compile_fds(fds)?;

    // Envoy's external authorization API (vendored with its imports and license), which the
    // gateway serves to Envoy's ext_authz filter.
    let envoy =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../third_party/envoy-api");
    println!("cargo:rerun-if-changed={}", envoy.display());
    let fds = protox::compile([ENVOY_EXT_AUTHZ], [&envoy])?;
    std::fs::write(
        out.join("envoy_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
