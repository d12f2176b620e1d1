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
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::cluster_service_client::ClusterServiceClient;
use switchyard_proto::v1::health_service_client::HealthServiceClient;
use switchyard_proto::v1::inference_service_client::InferenceServiceClient;
use switchyard_proto::v1::registry_service_client::RegistryServiceClient;
use switchyard_proto::v1::trace_service_client::TraceServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub const MOCK_KEY: &str = "sk-test-mock-key";

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
    fn spawn(name: &str, args: &[String], envs: &[(&str, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(binary(name));
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

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

pub struct ControlPlane {
    pub process: Process,
    pub addr: String,
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
        let port = free_port();
        let dir = tempfile::tempdir()?;
        let bootstrap = dir.path().join("bootstrap.yaml");
        std::fs::write(&bootstrap, bootstrap_yaml)?;
        let args = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--database-url".into(),
            database_url.clone(),
            "--bootstrap".into(),
            bootstrap.display().to_string(),
            "--node-id".into(),
            "test-cp".into(),
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

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .expect("url")
            .connect()
            .await
            .expect("control plane reachable")
    }

    pub async fn registry(&self) -> RegistryServiceClient<Channel> {
        RegistryServiceClient::new(self.channel().await)
    }

    pub async fn traces(&self) -> TraceServiceClient<Channel> {
        TraceServiceClient::new(self.channel().await)
    }

    pub async fn health(&self) -> HealthServiceClient<Channel> {
        HealthServiceClient::new(self.channel().await)
    }

    pub async fn cluster(&self) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.channel().await)
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

async fn spawn_control_plane(args: &[String], addr: &str) -> anyhow::Result<Process> {
    let mut process = Process::spawn("switchyard-control-plane", args, &[])?;
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
}

impl DataPlane {
    pub async fn start(control_plane: &ControlPlane) -> anyhow::Result<Self> {
        Self::start_as(control_plane, "test-dp").await
    }

    /// Starts one of several data planes, each with its own node id.
    pub async fn start_as(control_plane: &ControlPlane, node_id: &str) -> anyhow::Result<Self> {
        let (http_port, grpc_port) = (free_port(), free_port());
        let args = vec![
            "--http-listen".into(),
            format!("127.0.0.1:{http_port}"),
            "--grpc-listen".into(),
            format!("127.0.0.1:{grpc_port}"),
            "--control-plane".into(),
            control_plane.addr.clone(),
            "--node-id".into(),
            node_id.into(),
            "--max-body-bytes".into(),
            "65536".into(),
        ];
        let mut process = Process::spawn(
            "switchyard-data-plane",
            &args,
            &[
                ("MOCK_API_KEY", MOCK_KEY.to_owned()),
                // Short, so tests of a stalled provider run quickly.
                ("SWITCHYARD_FIRST_TOKEN_TIMEOUT", "1s".to_owned()),
                // Short, so the fleet's view follows quickly.
                ("SWITCHYARD_HEALTH_WINDOW", "500ms".to_owned()),
            ],
        )?;
        let http = format!("http://127.0.0.1:{http_port}");
        let client = http_client();
        for _ in 0..300 {
            if let Some(status) = process.exited() {
                bail!("data plane exited with {status}:\n{}", process.log_text());
            }
            if let Ok(r) = client.get(format!("{http}/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(Self {
                    process,
                    http,
                    grpc: format!("http://127.0.0.1:{grpc_port}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("data plane never became ready:\n{}", process.log_text())
    }

    pub async fn inference(&self) -> InferenceServiceClient<Channel> {
        let channel = Channel::from_shared(self.grpc.clone())
            .expect("url")
            .connect()
            .await
            .expect("data plane reachable");
        InferenceServiceClient::new(channel)
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.http)
    }
}

pub fn http_client() -> reqwest::Client {
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
