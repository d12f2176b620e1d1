//! The credentials a benchmark runs the gateway with, made afresh for every
//! run: the control plane's admin token and one API key of the default
//! workspace. The control plane gets both through its environment (the key
//! by a `secret_ref` in its bootstrap file), so neither is written to disk;
//! clients send them as `authorization: Bearer <secret>`: HTTP clients of the
//! data plane as a default header, gRPC clients of the control plane through
//! [`Bearer`].

use anyhow::{Context as _, bail};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use switchyard_proto::Bearer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Where the control plane reads its admin token from.
const ADMIN_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";
/// The control plane's variable the bootstrap file's key is read from.
const API_KEY_ENV: &str = "SWITCHYARD_BENCH_API_KEY";

/// The bootstrap lines registering the API key; a benchmark's registry
/// registers no other key.
pub const BOOTSTRAP_YAML: &str = "\
api_keys:
  - workspace: default
    name: bench
    secret_ref: env:SWITCHYARD_BENCH_API_KEY
";

/// One run's admin token and API key.
#[derive(Clone)]
pub struct Credentials {
    admin_token: String,
    api_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(…)")
    }
}

impl Credentials {
    /// A new random admin token and API key, as the control plane makes them.
    pub fn generate() -> Self {
        Self {
            admin_token: switchyard_control_plane::generate_secret(),
            api_key: switchyard_control_plane::generate_secret(),
        }
    }

    /// The environment a control plane of the run starts with: its admin
    /// token, and the key [`BOOTSTRAP_YAML`] registers.
    pub fn control_plane_env(&self) -> [(&'static str, String); 2] {
        [
            (ADMIN_TOKEN_ENV, self.admin_token.clone()),
            (API_KEY_ENV, self.api_key.clone()),
        ]
    }

    /// `builder` sending the API key with every request.
    pub fn with_api_key(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut value = HeaderValue::try_from(format!("Bearer {}", self.api_key))
            .context("the API key as a header")?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        Ok(builder.default_headers(headers))
    }

    /// The interceptor giving a control-plane client the admin token.
    pub fn admin(&self) -> anyhow::Result<Bearer> {
        Bearer::new(&self.admin_token).context("the admin token as gRPC metadata")
    }
}

/// A channel whose calls carry a bearer credential.
pub type Authorized = InterceptedService<Channel, Bearer>;

/// Fails unless the data plane at `base_url` (e.g. `http://127.0.0.1:1234`)
/// accepts the key `client` sends: a run whose every request gets 401 would
/// measure nothing.
pub async fn check_accepted(client: &reqwest::Client, base_url: &str) -> anyhow::Result<()> {
    let url = format!("{base_url}/v1/models");
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!(
            "the data plane refused the benchmark's API key: GET {url} answered {status}: {}",
            body.chars().take(200).collect::<String>()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_testkit::MockProvider;
    use tonic::service::Interceptor as _;

    #[test]
    fn the_control_plane_reads_both_secrets_from_its_environment() {
        let credentials = Credentials::generate();
        let env = credentials.control_plane_env();
        let config = switchyard_domain::BootstrapConfig::from_yaml(BOOTSTRAP_YAML).unwrap();
        let [key] = &config.api_keys[..] else {
            panic!("one key expected: {:?}", config.api_keys);
        };
        assert_eq!(key.workspace, "default");
        let var = key.secret_ref.strip_prefix("env:").unwrap();
        assert!(
            env.iter()
                .any(|(k, v)| *k == var && *v == credentials.api_key)
        );
        assert!(
            env.iter()
                .any(|(k, v)| *k == ADMIN_TOKEN_ENV && *v == credentials.admin_token)
        );
        for (_, secret) in env {
            switchyard_domain::validate_secret(&secret).unwrap();
        }
        assert_ne!(credentials.api_key, credentials.admin_token);
        assert!(!format!("{credentials:?}").contains(&credentials.api_key));
    }

    #[test]
    fn grpc_calls_carry_the_admin_token() {
        let credentials = Credentials::generate();
        let request = credentials
            .admin()
            .unwrap()
            .call(tonic::Request::new(()))
            .unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            format!("Bearer {}", credentials.admin_token).as_str()
        );
        let _: Option<Authorized> = None;
    }

    #[tokio::test]
    async fn http_requests_carry_the_api_key_and_a_refusal_stops_the_run() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = Credentials::generate();
        let client = credentials
            .with_api_key(reqwest::Client::builder())
            .unwrap()
            .build()
            .unwrap();
        let mock = MockProvider::start().await.unwrap();
        let base = mock.base_url();
        let root = base.strip_suffix("/v1").unwrap();
        check_accepted(&client, root).await.unwrap();
        client
            .post(format!("{base}/chat/completions"))
            .json(&serde_json::json!({"model": "m", "messages": []}))
            .send()
            .await
            .unwrap();
        let sent = mock.requests();
        assert_eq!(
            sent.last().unwrap().authorization.as_deref(),
            Some(format!("Bearer {}", credentials.api_key).as_str())
        );
        let refused = check_accepted(&client, &format!("{root}/nowhere"))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("404"), "{refused}");
    }
}
