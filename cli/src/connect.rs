//! How CLI commands reach a control plane: its URL and the admin token every
//! call carries.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_proto::Bearer;
use switchyard_tls::{CaFile, ClientTls};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, clap::Args)]
pub struct ControlPlaneArgs {
    /// Control-plane gRPC URL.
    #[arg(
        long = "control-plane",
        global = true,
        env = "SWITCHYARD_CP_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    url: String,
    /// The admin token; without it, the one `switchyard dev` keeps in its data directory.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Where `switchyard dev` keeps its admin token.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_DATA_DIR",
        default_value = ".switchyard"
    )]
    data_dir: PathBuf,
    /// PEM CA certificate(s) that sign the control plane's certificate, for
    /// an https:// URL (the system's roots without it).
    #[arg(long, global = true, env = "SWITCHYARD_CONTROL_PLANE_CA")]
    control_plane_ca: Option<PathBuf>,
}

impl ControlPlaneArgs {
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .with_context(|| format!("--control-plane {:?} is not a URL", self.url))?;
        if self.url.starts_with("https://") {
            switchyard_tls::install_provider();
            let tls = ClientTls {
                ca: self
                    .control_plane_ca
                    .as_deref()
                    .map(CaFile::load)
                    .transpose()?,
                identity: None,
            };
            endpoint = endpoint.tls_config(tls.grpc())?;
        } else if self.control_plane_ca.is_some() {
            anyhow::bail!(
                "--control-plane-ca applies to https:// URLs; --control-plane is {}",
                self.url
            );
        }
        endpoint
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .with_context(|| {
                let hint = if self.url.starts_with("https://") && self.control_plane_ca.is_none() {
                    " (is its certificate signed by a CA of this system? If not, pass that CA as --control-plane-ca)"
                } else {
                    ""
                };
                format!("cannot reach the control plane at {}{hint}", self.url)
            })
    }

    /// An interceptor adding `authorization: Bearer <admin token>` to every call.
    pub fn admin(&self) -> anyhow::Result<Bearer> {
        let token = crate::credentials::admin_token(self.admin_token.clone(), &self.data_dir)?;
        Bearer::new(&token).context("the admin token must be printable ASCII")
    }
}
