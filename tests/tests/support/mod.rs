//! Starts real Switchyard processes for end-to-end tests. Each test gets its own
//! Postgres database on the server `scripts/test.sh` started, its own ports, and
//! processes that die with the test.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Connection;
use switchyard_proto::Bearer;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::access_service_client::AccessServiceClient;
use switchyard_proto::v1::cluster_service_client::ClusterServiceClient;
use switchyard_proto::v1::health_service_client::HealthServiceClient;
use switchyard_proto::v1::inference_service_client::InferenceServiceClient;
use switchyard_proto::v1::registry_service_client::RegistryServiceClient;
use switchyard_proto::v1::trace_service_client::TraceServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub const MOCK_KEY: &str = "sk-test-mock-key";

/// The control planes' admin token in tests.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghijkl";

/// An API key of the default workspace, which every test control plane
/// registers from its bootstrap file; `http_client` and the gRPC clients send it.
pub const API_KEY: &str = "sy-test-key-0123456789abcdefghijklmnopqrstu";

/// The bootstrap lines registering [`API_KEY`], appended to every test registry.
const API_KEY_YAML: &str = "api_keys:\n  - workspace: default\n    name: test\n    secret_ref: env:SWITCHYARD_TEST_API_KEY\n";

/// Adds `authorization: Bearer <credential>` to every call of a gRPC client.
pub fn bearer(credential: &str) -> Bearer {
    Bearer::new(credential).expect("ASCII credential")
}

/// A channel whose calls carry a bearer credential.
pub type Authorized = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// The admin URL of the test Postgres; set by scripts/test.sh.
pub fn admin_database_url() -> String {
    std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .expect("SWITCHYARD_TEST_DATABASE_URL is not set: run the suite with ./scripts/test.sh")
}

/// A fresh, empty database for one test.
pub async fn fresh_database() -> anyhow::Result<String> {
    let admin = admin_database_url();
    let name = format!("sy_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .context("connecting to the test Postgres")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let (base, _) = admin
        .rsplit_once('/')
        .context("database URL has no database name")?;
    Ok(format!("{base}/{name}"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Path of a workspace binary, built by scripts/test.sh before the tests run.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("SWITCHYARD_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        // target/<profile>/deps/<test binary> -> target/<profile>
        None => std::env::current_exe()
            .expect("current exe")
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target dir")
            .to_path_buf(),
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (./scripts/test.sh does)",
        path.display()
    );
    path
}

pub struct Process {
    child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts one of the workspace's binaries, its output going to [`Process::log`].
    pub fn spawn(name: &str, args: &[String], envs: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::spawn_program(&binary(name), name, args, envs)
    }

    fn spawn_program(
        program: &std::path::Path,
        name: &str,
        args: &[String],
        envs: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("SWITCHYARD_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        Ok(Self {
            child,
            log,
            _dir: dir,
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends a signal by name (STOP, CONT, TERM) with kill(1).
    pub async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("process still running");
        let status = Command::new("kill")
            .args(["-s", name, &pid.to_string()])
            .status()
            .await
            .expect("kill(1) runs");
        assert!(status.success(), "kill -s {name} {pid} failed");
    }

    /// SIGTERM, then waits for the process to exit on its own.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("TERM").await;
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("no exit within {within:?} of SIGTERM:\n{}", self.log_text())
            })
            .expect("wait for the process")
    }

    /// Its exit status once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

pub struct ControlPlane {
    pub process: Process,
    pub addr: String,
    /// Base URL of its metrics listener (`GET /metrics`).
    pub metrics_url: String,
    pub database_url: String,
    args: Vec<String>,
    _bootstrap_dir: tempfile::TempDir,
}

impl ControlPlane {
    pub async fn start(bootstrap_yaml: &str) -> anyhow::Result<Self> {
        Self::start_with(bootstrap_yaml, &[]).await
    }

    /// Starts with further flags, e.g. shorter health timings.
    pub async fn start_with(bootstrap_yaml: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let database_url = fresh_database().await?;
        Self::launch(&database_url, "test-cp", bootstrap_yaml, extra).await
    }

    /// `n` replicas on one database, electing a leader through `etcd`; node
    /// ids cp-1 … cp-n.
    pub async fn start_replicas(
        n: usize,
        etcd: &Etcd,
        bootstrap_yaml: &str,
        extra: &[&str],
    ) -> anyhow::Result<Vec<Self>> {
        let database_url = fresh_database().await?;
        let mut args = vec!["--etcd-endpoints", etcd.endpoint.as_str()];
        args.extend_from_slice(extra);
        let mut replicas = Vec::with_capacity(n);
        for i in 1..=n {
            let node = format!("cp-{i}");
            replicas.push(Self::launch(&database_url, &node, bootstrap_yaml, &args).await?);
        }
        Ok(replicas)
    }

    async fn launch(
        database_url: &str,
        node_id: &str,
        bootstrap_yaml: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let database_url = database_url.to_owned();
        let port = free_port();
        let metrics_port = free_port();
        let dir = tempfile::tempdir()?;
        let bootstrap = dir.path().join("bootstrap.yaml");
        std::fs::write(&bootstrap, with_api_key(bootstrap_yaml))?;
        let args = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
            "--database-url".into(),
            database_url.clone(),
            "--bootstrap".into(),
            bootstrap.display().to_string(),
            "--node-id".into(),
            node_id.into(),
            "--registry-poll".into(),
            "500ms".into(),
            "--quality-interval".into(),
            "300ms".into(),
        ]
        .into_iter()
        .chain(extra.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<String>>();
        let addr = format!("http://127.0.0.1:{port}");
        let process = spawn_control_plane(&args, &addr).await?;
        Ok(Self {
            process,
            addr,
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            database_url,
            args,
            _bootstrap_dir: dir,
        })
    }

    /// Kills the process (SIGKILL: no goodbye to anyone).
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Starts it again on the same address and database.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill().await;
        self.process = spawn_control_plane(&self.args, &self.addr).await?;
        Ok(())
    }

    /// Starts it again on the same address and database with further flags.
    pub async fn restart_with(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        self.args.extend(extra.iter().map(|a| (*a).to_owned()));
        self.restart().await
    }

    /// The bootstrap file it was started with (the test's registry plus [`API_KEY`]).
    pub fn bootstrap_path(&self) -> PathBuf {
        self._bootstrap_dir.path().join("bootstrap.yaml")
    }

    /// The node id it was started with.
    pub fn args_node(&self) -> &str {
        self.args
            .iter()
            .position(|a| a == "--node-id")
            .and_then(|i| self.args.get(i + 1))
            .map_or("", String::as_str)
    }

    /// This replica's answer to ClusterService.Status; None while it does not answer.
    pub async fn status(&self) -> Option<pb::StatusResponse> {
        let channel = Channel::from_shared(self.addr.clone())
            .ok()?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(3))
            .connect()
            .await
            .ok()?;
        ClusterServiceClient::with_interceptor(channel, bearer(ADMIN_TOKEN))
            .status(pb::StatusRequest {})
            .await
            .ok()
            .map(tonic::Response::into_inner)
    }

    /// The Prometheus exposition of its `/metrics`, fetched without any credential.
    pub async fn metrics(&self) -> String {
        anonymous_http_client()
            .get(format!("{}/metrics", self.metrics_url))
            .send()
            .await
            .expect("control-plane metrics reachable")
            .error_for_status()
            .expect("metrics answered")
            .text()
            .await
            .expect("metrics body")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .expect("url")
            .connect()
            .await
            .expect("control plane reachable")
    }

    pub async fn registry(&self) -> RegistryServiceClient<Authorized> {
        RegistryServiceClient::with_interceptor(self.channel().await, bearer(ADMIN_TOKEN))
    }

    pub async fn traces(&self) -> TraceServiceClient<Authorized> {
        TraceServiceClient::with_interceptor(self.channel().await, bearer(ADMIN_TOKEN))
    }

    pub async fn health(&self) -> HealthServiceClient<Authorized> {
        HealthServiceClient::with_interceptor(self.channel().await, bearer(ADMIN_TOKEN))
    }

    pub async fn cluster(&self) -> ClusterServiceClient<Authorized> {
        ClusterServiceClient::with_interceptor(self.channel().await, bearer(ADMIN_TOKEN))
    }

    pub async fn access(&self) -> AccessServiceClient<Authorized> {
        AccessServiceClient::with_interceptor(self.channel().await, bearer(ADMIN_TOKEN))
    }

    /// A new API key of `workspace` (which must be registered, or "default").
    pub async fn api_key(&self, workspace: &str) -> String {
        self.access()
            .await
            .create_api_key(pb::CreateApiKeyRequest {
                workspace: workspace.into(),
                name: format!("test-{workspace}"),
                ..Default::default()
            })
            .await
            .expect("CreateApiKey")
            .into_inner()
            .secret
    }

    /// Waits for a trace to be stored (reporting is asynchronous by design).
    pub async fn wait_for_trace(&self, trace_id: &str) -> pb::Trace {
        let mut client = self.traces().await;
        for _ in 0..200 {
            let request = pb::GetTraceRequest {
                trace_id: trace_id.to_owned(),
            };
            match client.get_trace(request).await {
                Ok(trace) => return trace.into_inner(),
                Err(status) if status.code() == tonic::Code::NotFound => {}
                Err(status) => panic!("GetTrace failed: {status}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("trace {trace_id} was never stored");
    }
}

/// The environment every test control plane runs with: the admin token,
/// the secret of [`API_KEY`], and metrics on a port of its own (tests run
/// side by side; [`ControlPlane`] names the port with a flag).
pub fn control_plane_envs() -> [(&'static str, String); 3] {
    [
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("SWITCHYARD_TEST_API_KEY", API_KEY.to_owned()),
        ("SWITCHYARD_CP_METRICS_LISTEN", "127.0.0.1:0".to_owned()),
    ]
}

/// A registry file's text with [`API_KEY`] registered, as every test control plane has.
pub fn with_api_key(bootstrap_yaml: &str) -> String {
    format!("{bootstrap_yaml}{API_KEY_YAML}")
}

async fn spawn_control_plane(args: &[String], addr: &str) -> anyhow::Result<Process> {
    let mut process = Process::spawn("switchyard-control-plane", args, &control_plane_envs())?;
    for _ in 0..300 {
        if let Some(status) = process.exited() {
            bail!(
                "control plane exited with {status}:\n{}",
                process.log_text()
            );
        }
        if Channel::from_shared(addr.to_owned())?
            .connect()
            .await
            .is_ok()
        {
            return Ok(process);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("control plane did not start:\n{}", process.log_text())
}

pub struct DataPlane {
    pub process: Process,
    pub http: String,
    pub grpc: String,
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
    /// The state directory, when the harness made it.
    _state: Option<tempfile::TempDir>,
}

impl DataPlane {
    pub async fn start(control_plane: &ControlPlane) -> anyhow::Result<Self> {
        Self::start_as(control_plane, "test-dp").await
    }

    /// Starts one of several data planes, each with its own node id.
    pub async fn start_as(control_plane: &ControlPlane, node_id: &str) -> anyhow::Result<Self> {
        let state = tempfile::tempdir()?;
        let mut dp = Self::start_on(&[control_plane], node_id, state.path(), &[]).await?;
        dp._state = Some(state);
        Ok(dp)
    }

    /// A data plane following every given control-plane replica, keeping
    /// its state (persisted snapshot, trace spool) in `state_dir`.
    pub async fn start_on(
        control_planes: &[&ControlPlane],
        node_id: &str,
        state_dir: &std::path::Path,
        extra_envs: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        let (http_port, grpc_port) = (free_port(), free_port());
        let addrs: Vec<&str> = control_planes.iter().map(|c| c.addr.as_str()).collect();
        let args = vec![
            "--http-listen".into(),
            format!("127.0.0.1:{http_port}"),
            "--grpc-listen".into(),
            format!("127.0.0.1:{grpc_port}"),
            "--control-plane".into(),
            addrs.join(","),
            "--node-id".into(),
            node_id.into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--max-body-bytes".into(),
            "65536".into(),
        ];
        let mut envs = vec![
            ("MOCK_API_KEY", MOCK_KEY.to_owned()),
            // Short, so tests of a stalled provider run quickly.
            ("SWITCHYARD_FIRST_TOKEN_TIMEOUT", "1s".to_owned()),
            // Short, so the fleet's view follows quickly.
            ("SWITCHYARD_HEALTH_WINDOW", "500ms".to_owned()),
        ];
        envs.extend_from_slice(extra_envs);
        let process = Self::launch(&args, &envs).await?;
        Ok(Self {
            process,
            http: format!("http://127.0.0.1:{http_port}"),
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            args,
            envs,
            _state: None,
        })
    }

    async fn launch(args: &[String], envs: &[(&'static str, String)]) -> anyhow::Result<Process> {
        let mut process = Process::spawn("switchyard-data-plane", args, envs)?;
        let http = args
            .iter()
            .position(|a| a == "--http-listen")
            .and_then(|i| args.get(i + 1))
            .map(|addr| format!("http://{addr}"))
            .context("no --http-listen")?;
        let client = http_client();
        for _ in 0..300 {
            if let Some(status) = process.exited() {
                bail!("data plane exited with {status}:\n{}", process.log_text());
            }
            if let Ok(r) = client.get(format!("{http}/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(process);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("data plane never became ready:\n{}", process.log_text())
    }

    /// Stops it gracefully (SIGTERM) and starts it again with the same
    /// flags, ports and state directory; returns once it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let status = self.process.terminate(Duration::from_secs(30)).await;
        anyhow::ensure!(status.success(), "data plane exited with {status}");
        self.process = Self::launch(&self.args, &self.envs).await?;
        Ok(())
    }

    pub async fn inference(&self) -> InferenceServiceClient<Authorized> {
        let channel = Channel::from_shared(self.grpc.clone())
            .expect("url")
            .connect()
            .await
            .expect("data plane reachable");
        InferenceServiceClient::with_interceptor(channel, bearer(API_KEY))
    }

    /// The Prometheus exposition of `/metrics`.
    pub async fn metrics(&self) -> String {
        http_client()
            .get(format!("{}/metrics", self.http))
            .send()
            .await
            .expect("data plane reachable")
            .text()
            .await
            .expect("metrics body")
    }

    /// One JSON chat completion of `model`, under `strategy` if given;
    /// panics unless it is served; returns its trace id.
    pub async fn chat(&self, model: &str, strategy: Option<&str>) -> String {
        let mut request = http_client()
            .post(self.chat_url())
            .json(&serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "hello"}],
            }));
        if let Some(strategy) = strategy {
            request = request.header("x-switchyard-strategy", strategy);
        }
        let response = request.send().await.expect("data plane reachable");
        assert!(response.status().is_success(), "{}", response.status());
        response.headers()["x-switchyard-trace-id"]
            .to_str()
            .expect("ASCII trace id")
            .to_owned()
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.http)
    }
}

/// An HTTP client that sends [`API_KEY`] with every request.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {API_KEY}").parse().expect("ASCII key"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("http client")
}

/// An HTTP client that sends no API key.
pub fn anonymous_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("http client")
}

/// A registry with one OpenAI-compatible provider per (name, base URL), each
/// serving `mock-model`; earlier providers are cheaper, so the cost strategy
/// tries them first.
pub fn registry_yaml(providers: &[(&str, &str)]) -> String {
    let mut yaml = String::from("providers:\n");
    for (name, url) in providers {
        yaml.push_str(&format!(
            "  - name: {name}\n    kind: openai\n    base_url: {url}\n    api_key_ref: env:MOCK_API_KEY\n"
        ));
    }
    yaml.push_str("models:\n");
    for (i, (name, _)) in providers.iter().enumerate() {
        let price = 1.0 + i as f64;
        yaml.push_str(&format!(
            "  - provider: {name}\n    name: mock-model\n    family: mock-{name}\n    capabilities: {{ streaming: true }}\n    \
             context_window: 100000\n    input_price_per_mtok: {price}\n    output_price_per_mtok: {}\n    tier: standard\n",
            price * 2.0
        ));
    }
    yaml
}

/// Reads an SSE body whole: the data payloads in order.
pub async fn sse_data(response: reqwest::Response) -> Vec<String> {
    sse_payloads(&response.text().await.expect("stream body"))
}

/// The data payloads of an SSE body, in order.
pub fn sse_payloads(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

/// A throwaway etcd for one test, on its own ports and data directory, so a
/// test may stop and restart it without touching anyone else's. The binary
/// is `SWITCHYARD_TEST_ETCD_BIN` or `etcd` on PATH (scripts/test.sh installs it).
pub struct Etcd {
    process: Option<Process>,
    pub endpoint: String,
    args: Vec<String>,
    _data: tempfile::TempDir,
}

impl Etcd {
    pub async fn start() -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args = vec![
            "--name".into(),
            "test".into(),
            "--data-dir".into(),
            data.path().join("data").display().to_string(),
            "--listen-client-urls".into(),
            endpoint.clone(),
            "--advertise-client-urls".into(),
            endpoint.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("test={peer_url}"),
        ];
        let mut etcd = Self {
            process: None,
            endpoint,
            args,
            _data: data,
        };
        etcd.restart().await?;
        Ok(etcd)
    }

    /// Kills it (SIGKILL); its data stays for a restart.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
    }

    /// Starts it (again) on the same ports and data; returns once it is healthy.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let program = std::env::var_os("SWITCHYARD_TEST_ETCD_BIN")
            .map_or_else(|| PathBuf::from("etcd"), PathBuf::from);
        let mut process = Process::spawn_program(&program, "etcd", &self.args, &[])
            .context("starting etcd (scripts/test.sh installs it)")?;
        let client = http_client();
        for _ in 0..200 {
            if let Some(status) = process.exited() {
                bail!("etcd exited with {status}:\n{}", process.log_text());
            }
            if let Ok(r) = client.get(format!("{}/health", self.endpoint)).send().await
                && r.status().is_success()
            {
                self.process = Some(process);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("etcd never became healthy:\n{}", process.log_text())
    }
}

/// A Redis of one test's own on a free loopback port, without persistence,
/// so the test may kill it by its pid.
pub struct Redis {
    process: Option<Process>,
    pub url: String,
}

impl Redis {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let args = [
            "--port".to_owned(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ];
        let process =
            Process::spawn_program(std::path::Path::new("redis-server"), "redis", &args, &[])?;
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return Ok(Self {
                    process: Some(process),
                    url: format!("redis://{addr}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("redis-server did not start:\n{}", process.log_text())
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await;
        }
    }
}
