//! The admin credential: every RPC but the data planes' own (snapshot sync,
//! trace reports), health and reflection needs `authorization: Bearer
//! <admin token>`. Checked in one tower layer in front of every service, so
//! no handler can forget it.

use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use switchyard_domain::{KeyGrant, RateLimits, secret_sha256};
use tonic::Status;

/// RPC paths open without the admin token: probes, discovery, and what data
/// planes call (protected by mTLS where it is configured).
const OPEN_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/switchyard.v1.SnapshotService/",
    "/switchyard.v1.TraceService/Report",
];

/// The admin token. Its Debug output never shows it.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self(Arc::from(token))
    }

    /// Whether `headers` carry this token as a bearer credential. Compares
    /// digests, so the time taken says nothing about the token.
    pub fn admits(&self, headers: &http::HeaderMap) -> bool {
        let Some(presented) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        Sha256::digest(presented.trim().as_bytes()) == Sha256::digest(self.0.as_bytes())
    }

    /// The secret replays are sent to data planes with. Derived from the
    /// admin token, so every replica presents the same one and none stores it.
    pub fn replay_secret(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"switchyard replay key\0");
        hash.update(self.0.as_bytes());
        format!("sy-replay-{:x}", hash.finalize())
    }

    /// The replay secret's grant: it may act for any workspace.
    pub fn replay_grant(&self) -> KeyGrant {
        KeyGrant {
            id: "replay".into(),
            secret_sha256: secret_sha256(&self.replay_secret()),
            workspace: String::new(),
            allowed_models: vec![],
            limits: RateLimits::default(),
            any_workspace: true,
        }
    }
}

/// Entries ending in `/` open a whole service; others, one method.
fn needs_admin(path: &str) -> bool {
    !OPEN_PATHS.iter().any(|open| {
        if open.ends_with('/') {
            path.starts_with(open)
        } else {
            path == *open
        }
    })
}

#[derive(Clone)]
pub struct AdminAuthLayer {
    token: AdminToken,
}

impl AdminAuthLayer {
    pub fn new(token: AdminToken) -> Self {
        Self { token }
    }
}

impl<S> tower::Layer<S> for AdminAuthLayer {
    type Service = AdminAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdminAuth {
            inner,
            token: self.token.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AdminAuth<S> {
    inner: S,
    token: AdminToken,
}

impl<S, B> tower::Service<http::Request<B>> for AdminAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, std::future::Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if needs_admin(request.uri().path()) && !self.token.admits(request.headers()) {
            let status = Status::unauthenticated(
                "this RPC needs the admin token: send the header `authorization: Bearer <token>`",
            );
            return futures::future::Either::Right(std::future::ready(Ok(status.into_http())));
        }
        futures::future::Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_plane_probe_and_discovery_paths_are_open() {
        for open in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/switchyard.v1.SnapshotService/Sync",
            "/switchyard.v1.TraceService/Report",
        ] {
            assert!(!needs_admin(open), "{open}");
        }
        for closed in [
            "/switchyard.v1.TraceService/ListTraces",
            "/switchyard.v1.TraceService/ReportX",
            "/switchyard.v1.RegistryService/CreateProvider",
            "/switchyard.v1.AccessService/CreateApiKey",
            "/switchyard.v1.ClusterService/Status",
        ] {
            assert!(needs_admin(closed), "{closed}");
        }
    }

    #[test]
    fn the_token_is_checked_whole_and_never_shown() {
        let token = AdminToken::new("a-long-enough-admin-token-for-tests");
        let mut headers = http::HeaderMap::new();
        assert!(!token.admits(&headers));
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer a-long-enough".parse().unwrap(),
        );
        assert!(!token.admits(&headers));
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer a-long-enough-admin-token-for-tests"
                .parse()
                .unwrap(),
        );
        assert!(token.admits(&headers));
        assert!(!format!("{token:?}").contains("long"));
        assert_ne!(
            token.replay_secret(),
            AdminToken::new("other").replay_secret()
        );
    }
}
