//! TLS end to end with real processes and certificates made for the test: a
//! control plane that requires client certificates of its data planes (mTLS),
//! a data plane serving HTTPS and gRPC over TLS, and everything that must be
//! refused: no client certificate, one signed by another CA, plaintext.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{
    ADMIN_TOKEN, API_KEY, Process, bearer, control_plane_envs, free_port, fresh_database,
    registry_yaml, with_api_key,
};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::inference_service_client::InferenceServiceClient;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_proto::v1::trace_service_client::TraceServiceClient;
use switchyard_testkit::MockProvider;
use switchyard_testkit::pki::{Pki, PkiFiles};
use switchyard_tls::{CaFile, ClientTls, KeyPairFiles};
use tonic::transport::{Channel, Endpoint};

/// Trust in the fleet's CA, without a client certificate (an operator's tool).
fn operator_tls(pki: &PkiFiles) -> ClientTls {
    ClientTls {
        ca: Some(CaFile::load(&pki.ca).unwrap()),
        identity: None,
    }
}

/// Trust in the fleet's CA and a client certificate of `signer`'s.
fn client_tls(pki: &PkiFiles, signer: &PkiFiles) -> ClientTls {
    ClientTls {
        ca: Some(CaFile::load(&pki.ca).unwrap()),
        identity: Some(KeyPairFiles::load(&signer.client_cert, &signer.client_key).unwrap()),
    }
}

async fn connect(url: &str, tls: &ClientTls) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls.grpc())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// The first message of a data plane's snapshot stream.
fn hello(node_id: &str) -> impl tonic::IntoStreamingRequest<Message = pb::SyncRequest> {
    tokio_stream::iter([pb::SyncRequest {
        kind: Some(pb::sync_request::Kind::Hello(pb::Hello {
            node_id: node_id.into(),
            ..Default::default()
        })),
    }])
}

/// A control plane serving gRPC over TLS that requires client certificates
/// signed by the fleet's CA of its data planes.
struct SecureControlPlane {
    process: Process,
    url: String,
    _dir: tempfile::TempDir,
}

impl SecureControlPlane {
    async fn start(pki: &PkiFiles, bootstrap_yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = dir.path().join("bootstrap.yaml");
        std::fs::write(&bootstrap, with_api_key(bootstrap_yaml)).unwrap();
        let port = free_port();
        let args = [
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--database-url".to_owned(),
            fresh_database().await.unwrap(),
            "--bootstrap".to_owned(),
            bootstrap.display().to_string(),
            "--tls-cert".to_owned(),
            pki.server_cert.display().to_string(),
            "--tls-key".to_owned(),
            pki.server_key.display().to_string(),
            "--tls-client-ca".to_owned(),
            pki.ca.display().to_string(),
        ];
        let mut process =
            Process::spawn("switchyard-control-plane", &args, &control_plane_envs()).unwrap();
        let url = format!("https://127.0.0.1:{port}");
        for _ in 0..300 {
            if let Some(status) = process.exited() {
                panic!(
                    "control plane exited with {status}:\n{}",
                    process.log_text()
                );
            }
            if connect(&url, &operator_tls(pki)).await.is_ok() {
                return Self {
                    process,
                    url,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("control plane did not start:\n{}", process.log_text());
    }
}

/// A data plane serving HTTPS and gRPC over TLS with the fleet's server
/// certificate, reaching `cp` over TLS with `client_flags` for its side.
struct SecureDataPlane {
    process: Process,
    https: String,
    grpc: String,
    _state: tempfile::TempDir,
}

impl SecureDataPlane {
    fn spawn(pki: &PkiFiles, cp: &SecureControlPlane, client_flags: &[String]) -> Self {
        let state = tempfile::tempdir().unwrap();
        let (http_port, grpc_port) = (free_port(), free_port());
        let mut args = vec![
            "--http-listen".to_owned(),
            format!("127.0.0.1:{http_port}"),
            "--grpc-listen".to_owned(),
            format!("127.0.0.1:{grpc_port}"),
            "--control-plane".to_owned(),
            cp.url.clone(),
            "--state-dir".to_owned(),
            state.path().display().to_string(),
            "--tls-cert".to_owned(),
            pki.server_cert.display().to_string(),
            "--tls-key".to_owned(),
            pki.server_key.display().to_string(),
        ];
        args.extend_from_slice(client_flags);
        let envs = [("MOCK_API_KEY", support::MOCK_KEY.to_owned())];
        Self {
            process: Process::spawn("switchyard-data-plane", &args, &envs).unwrap(),
            https: format!("https://127.0.0.1:{http_port}"),
            grpc: format!("https://127.0.0.1:{grpc_port}"),
            _state: state,
        }
    }

    /// Whether `/readyz` answers 200 (a snapshot has arrived) within `wait`.
    async fn ready_within(&mut self, client: &reqwest::Client, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.process.exited() {
                panic!(
                    "data plane exited with {status}:\n{}",
                    self.process.log_text()
                );
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.https)).send().await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

fn data_plane_client_flags(pki: &PkiFiles, signer: &PkiFiles) -> Vec<String> {
    [
        "--control-plane-ca",
        &pki.ca.display().to_string(),
        "--control-plane-cert",
        &signer.client_cert.display().to_string(),
        "--control-plane-key",
        &signer.client_key.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// An HTTPS client that trusts the fleet's CA and sends [`API_KEY`].
fn https_client(pki: &PkiFiles) -> reqwest::Client {
    switchyard_tls::install_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {API_KEY}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap()
}

struct Fleet {
    _dir: tempfile::TempDir,
    files: PkiFiles,
    /// Certificates of another CA: a stranger's.
    rogue: PkiFiles,
}

fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("fleet"), dir.path().join("rogue"));
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    Fleet {
        files: Pki::generate().write_to(&ours),
        rogue: Pki::generate().write_to(&theirs),
        _dir: dir,
    }
}

#[tokio::test]
async fn a_data_plane_with_the_fleets_certificate_subscribes_reports_and_serves_over_tls() {
    let fleet = fleet();
    let pki = &fleet.files;
    let mock = MockProvider::start().await.unwrap();
    let cp = SecureControlPlane::start(pki, &registry_yaml(&[("alpha", &mock.base_url())])).await;
    let mut dp = SecureDataPlane::spawn(pki, &cp, &data_plane_client_flags(pki, pki));
    let client = https_client(pki);
    assert!(
        dp.ready_within(&client, Duration::from_secs(15)).await,
        "the data plane never got a snapshot over mTLS:\n{}\n{}",
        dp.process.log_text(),
        cp.process.log_text()
    );

    // HTTPS: served, with HSTS beside the other security headers.
    let response = client
        .post(format!("{}/v1/chat/completions", dp.https))
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // The trace went to the control plane over mTLS; an operator reads it
    // back over TLS with the admin token and no client certificate.
    let channel = connect(&cp.url, &operator_tls(pki)).await.unwrap();
    let mut traces = TraceServiceClient::with_interceptor(channel, bearer(ADMIN_TOKEN));
    let mut stored = None;
    for _ in 0..200 {
        match traces
            .get_trace(pb::GetTraceRequest {
                trace_id: trace_id.clone(),
            })
            .await
        {
            Ok(trace) => {
                stored = Some(trace.into_inner());
                break;
            }
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => panic!("GetTrace over TLS: {status}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored.expect("the trace was reported").trace_id, trace_id);

    // gRPC inference over TLS.
    let channel = connect(&dp.grpc, &operator_tls(pki)).await.unwrap();
    let reply = InferenceServiceClient::with_interceptor(channel, bearer(API_KEY))
        .complete(pb::CompleteRequest {
            model: "mock-model".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "hi".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.content.is_empty());

    // Plaintext to a TLS listener gets nowhere.
    let plain = support::http_client()
        .get(format!(
            "{}/readyz",
            dp.https.replace("https://", "http://")
        ))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP was served on the HTTPS listener"
    );
}

#[tokio::test]
async fn a_data_plane_without_a_valid_client_certificate_cannot_subscribe() {
    let fleet = fleet();
    let pki = &fleet.files;
    let mock = MockProvider::start().await.unwrap();
    let cp = SecureControlPlane::start(pki, &registry_yaml(&[("alpha", &mock.base_url())])).await;
    let client = https_client(pki);

    // No client certificate, and one signed by another CA: neither data
    // plane ever gets a snapshot, so neither turns ready.
    let mut without = SecureDataPlane::spawn(
        pki,
        &cp,
        &[
            "--control-plane-ca".to_owned(),
            pki.ca.display().to_string(),
        ],
    );
    let mut stranger =
        SecureDataPlane::spawn(pki, &cp, &data_plane_client_flags(pki, &fleet.rogue));
    assert!(!without.ready_within(&client, Duration::from_secs(4)).await);
    assert!(!stranger.ready_within(&client, Duration::from_secs(1)).await);
    // A data plane with the fleet's certificate, started after them, is served.
    let mut member = SecureDataPlane::spawn(pki, &cp, &data_plane_client_flags(pki, pki));
    assert!(
        member.ready_within(&client, Duration::from_secs(15)).await,
        "{}",
        member.process.log_text()
    );
    assert!(
        without
            .process
            .log_text()
            .contains("client certificate signed by"),
        "the refusal is named in the data plane's log:\n{}",
        without.process.log_text()
    );

    // The same, asked directly: Sync without a certificate is refused by
    // name even with the admin token; a stranger's certificate fails the
    // handshake; plaintext does not reach the service.
    let channel = connect(&cp.url, &operator_tls(pki)).await.unwrap();
    let sync = SnapshotServiceClient::with_interceptor(channel, bearer(ADMIN_TOKEN))
        .sync(hello("intruder"))
        .await;
    let status = match sync {
        Ok(_) => panic!("Sync was served without a client certificate"),
        Err(status) => status,
    };
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("--tls-client-ca"), "{status:?}");

    let rogue = connect(&cp.url, &client_tls(pki, &fleet.rogue)).await;
    // In TLS 1.3 the client sends its certificate after the server's flight,
    // so the refusal may surface on the first call (as whatever error the
    // dropped connection makes) instead of at connect.
    let served = match rogue {
        Err(_) => None,
        Ok(channel) => SnapshotServiceClient::new(channel)
            .sync(hello("stranger"))
            .await
            .ok(),
    };
    assert!(served.is_none(), "a stranger's certificate was accepted");

    let plaintext = Endpoint::from_shared(cp.url.replace("https://", "http://"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    let plain = SnapshotServiceClient::new(plaintext)
        .sync(hello("plain"))
        .await;
    assert!(plain.is_err(), "plaintext reached the TLS listener");

    // Admin RPCs over TLS still go by the admin token alone.
    let channel = connect(&cp.url, &operator_tls(pki)).await.unwrap();
    let list = TraceServiceClient::new(channel.clone())
        .list_traces(pb::ListTracesRequest::default())
        .await;
    assert_eq!(list.unwrap_err().code(), tonic::Code::Unauthenticated);
    TraceServiceClient::with_interceptor(channel, bearer(ADMIN_TOKEN))
        .list_traces(pb::ListTracesRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_key_that_does_not_fit_its_certificate_stops_the_start_by_name() {
    let fleet = fleet();
    let pki = &fleet.files;
    let args = [
        "--listen".to_owned(),
        format!("127.0.0.1:{}", free_port()),
        "--database-url".to_owned(),
        "sqlite::memory:".to_owned(),
        "--tls-cert".to_owned(),
        pki.server_cert.display().to_string(),
        "--tls-key".to_owned(),
        pki.client_key.display().to_string(),
    ];
    let mut process =
        Process::spawn("switchyard-control-plane", &args, &control_plane_envs()).unwrap();
    let mut status = None;
    for _ in 0..200 {
        status = process.exited();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("the control plane refused to start");
    assert!(!status.success());
    let log = process.log_text();
    assert!(
        log.contains("does not fit") && log.contains("client-key.pem"),
        "{log}"
    );
}
