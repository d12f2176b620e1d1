//! Who may call what: every RPC but the data planes' own (snapshot sync,
//! trace reports), health and reflection needs `authorization: Bearer
//! <admin token>`; with mTLS configured, the data planes' own need a client
//! certificate signed by the control plane's client CA. Checked in one tower
//! layer in front of every service, so no handler can forget it.

use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use switchyard_domain::{KeyGrant, RateLimits, secret_sha256};
use tonic::Status;

/// RPC paths open to anyone: probes and discovery.
const OPEN_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// RPC paths that data planes call: open without mTLS, else they need a
/// client certificate.
const DATA_PLANE_PATHS: &[&str] = &[
    "/switchyard.v1.SnapshotService/",
    "/switchyard.v1.TraceService/Report",
];

/// What a call must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anyone,
    DataPlane,
    Admin,
}

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

/// Entries ending in `/` match a whole service; others, one method.
fn matches_any(paths: &[&str], path: &str) -> bool {
    paths.iter().any(|entry| {
        if entry.ends_with('/') {
            path.starts_with(entry)
        } else {
            path == *entry
        }
    })
}

fn caller(path: &str) -> Caller {
    if matches_any(OPEN_PATHS, path) {
        Caller::Anyone
    } else if matches_any(DATA_PLANE_PATHS, path) {
        Caller::DataPlane
    } else {
        Caller::Admin
    }
}

#[derive(Clone)]
pub struct AdminAuthLayer {
    token: AdminToken,
    data_planes_need_certificates: bool,
}

impl AdminAuthLayer {
    /// `data_planes_need_certificates`: mTLS is on, so Sync and Report need
    /// a verified client certificate.
    pub fn new(token: AdminToken, data_planes_need_certificates: bool) -> Self {
        Self {
            token,
            data_planes_need_certificates,
        }
    }
}

impl<S> tower::Layer<S> for AdminAuthLayer {
    type Service = AdminAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdminAuth {
            inner,
            token: self.token.clone(),
            data_planes_need_certificates: self.data_planes_need_certificates,
        }
    }
}

#[derive(Clone)]
pub struct AdminAuth<S> {
    inner: S,
    token: AdminToken,
    data_planes_need_certificates: bool,
}

impl<S> AdminAuth<S> {
    /// Why the request may not go on, if it may not.
    fn refusal<B>(&self, request: &http::Request<B>) -> Option<Status> {
        match caller(request.uri().path()) {
            Caller::Anyone => None,
            Caller::DataPlane
                if self.data_planes_need_certificates
                    && !switchyard_tls::has_client_certificate(request.extensions()) =>
            {
                Some(Status::unauthenticated(
                    "this RPC is for data planes: connect with a client certificate signed by \
                     the control plane's --tls-client-ca",
                ))
            }
            Caller::DataPlane => None,
            Caller::Admin if self.token.admits(request.headers()) => None,
            Caller::Admin => Some(Status::unauthenticated(
                "this RPC needs the admin token: send the header `authorization: Bearer <token>`",
            )),
        }
    }
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
        if let Some(status) = self.refusal(&request) {
            return futures::future::Either::Right(std::future::ready(Ok(status.into_http())));
        }
        futures::future::Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_probe_and_discovery_paths_are_open_and_only_sync_and_report_are_the_data_planes() {
        for open in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(caller(open), Caller::Anyone, "{open}");
        }
        for data_plane in [
            "/switchyard.v1.SnapshotService/Sync",
            "/switchyard.v1.TraceService/Report",
        ] {
            assert_eq!(caller(data_plane), Caller::DataPlane, "{data_plane}");
        }
        for closed in [
            "/switchyard.v1.TraceService/ListTraces",
            "/switchyard.v1.TraceService/ReportX",
            "/switchyard.v1.RegistryService/CreateProvider",
            "/switchyard.v1.AccessService/CreateApiKey",
            "/switchyard.v1.ClusterService/Status",
        ] {
            assert_eq!(caller(closed), Caller::Admin, "{closed}");
        }
    }

    #[test]
    fn with_mtls_data_plane_rpcs_need_a_certificate_and_admin_rpcs_still_the_token() {
        let token = AdminToken::new("a-long-enough-admin-token-for-tests");
        let request = |path: &str, bearer: Option<&str>| {
            let mut builder = http::Request::builder().uri(path);
            if let Some(bearer) = bearer {
                builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {bearer}"));
            }
            builder.body(()).unwrap()
        };
        let layer = |mtls| AdminAuth {
            inner: (),
            token: token.clone(),
            data_planes_need_certificates: mtls,
        };
        let sync = request("/switchyard.v1.SnapshotService/Sync", None);
        assert!(layer(false).refusal(&sync).is_none());
        let refused = layer(true).refusal(&sync).unwrap();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(refused.message().contains("--tls-client-ca"), "{refused:?}");
        // The admin token is no substitute for a data plane's certificate.
        let sync_with_token = request(
            "/switchyard.v1.SnapshotService/Sync",
            Some("a-long-enough-admin-token-for-tests"),
        );
        assert!(layer(true).refusal(&sync_with_token).is_some());
        let list = request(
            "/switchyard.v1.TraceService/ListTraces",
            Some("a-long-enough-admin-token-for-tests"),
        );
        assert!(layer(true).refusal(&list).is_none());
        let health = request("/grpc.health.v1.Health/Check", None);
        assert!(layer(true).refusal(&health).is_none());
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
