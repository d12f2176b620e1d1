//! Generated code for the `switchyard.v1` wire contract (`proto/switchyard/v1`).
//!
//! This crate owns nothing but the generated types, clients, servers and the file
//! descriptor set for gRPC reflection. It must never depend on any other
//! switchyard crate; hand-written logic belongs in `switchyard-domain`. Two
//! helpers live here: the reflection services from the descriptor set, and
//! the interceptor that sends a bearer credential, which every client of the
//! wire contract needs.

/// Package `switchyard.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("switchyard.v1");
}

/// Encoded `FileDescriptorSet` of every switchyard.v1 file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("switchyard_descriptor");

/// gRPC reflection (v1 and v1alpha, for older grpcurl) advertising exactly the
/// given switchyard services plus health and reflection, so each server lists
/// only what it serves.
pub fn reflection_services(
    services: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection");
        for name in services {
            b = b.with_service_name(*name);
        }
        b
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

pub use tonic_reflection::server::Error as ReflectionError;

/// A client interceptor adding `authorization: Bearer <credential>` (an API
/// key for data planes, the admin token for control planes) to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// Fails when the credential is not printable ASCII.
    pub fn new(credential: &str) -> Result<Self, tonic::metadata::errors::InvalidMetadataValue> {
        format!("Bearer {credential}").parse().map(Self)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}
