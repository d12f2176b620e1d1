//! Generates the switchyard.v1 gRPC code and the descriptor set that powers
//! gRPC reflection. Uses the vendored protoc unless `PROTOC` points elsewhere,
//! so a fresh machine needs no system protobuf compiler.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "switchyard/v1/registry.proto",
    "switchyard/v1/snapshot.proto",
    "switchyard/v1/trace.proto",
    "switchyard/v1/inference.proto",
    "switchyard/v1/cluster.proto",
    "switchyard/v1/health.proto",
    "switchyard/v1/access.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }

    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| proto_root.join(p)).collect();
    let includes = vec![proto_root.clone(), protoc_bin_vendored::include_path()?];

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("switchyard_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}
