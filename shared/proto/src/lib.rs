//! Generated code for the `switchyard.v1` wire contract (`proto/switchyard/v1`).
//!
//! This crate owns nothing but the generated types, clients, servers and the file
//! descriptor set for gRPC reflection. It must never depend on any other
//! switchyard crate; hand-written logic belongs in `switchyard-domain`.

/// Package `switchyard.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("switchyard.v1");
}

/// Encoded `FileDescriptorSet` of every switchyard.v1 file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("switchyard_descriptor");
