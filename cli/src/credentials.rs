//! `switchyard dev`'s credentials: an API key of the default workspace and
//! the control plane's admin token. Each comes from the environment
//! (`SWITCHYARD_DEV_API_KEY`, `SWITCHYARD_ADMIN_TOKEN`) or from a file in the
//! data directory, made on first start (readable by its owner only), so the
//! same key works across restarts and the quick start stays one step.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use switchyard_domain::{BootstrapKey, validate_secret};

pub const API_KEY_ENV: &str = "SWITCHYARD_DEV_API_KEY";
pub const ADMIN_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";
pub const API_KEY_FILE: &str = "api-key";
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

pub struct Dev {
    pub api_key: String,
    pub admin_token: String,
    /// Where the key lives, for the bootstrap file's reference to it.
    api_key_ref: String,
    /// Where both came from, in words.
    pub origin: String,
}

impl Dev {
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let (api_key, api_key_ref, key_from) = match non_empty_env(API_KEY_ENV) {
            Some(key) => (
                key,
                format!("env:{API_KEY_ENV}"),
                format!("key from {API_KEY_ENV}"),
            ),
            None => {
                let path = absolute(&data_dir.join(API_KEY_FILE))?;
                let key = read_or_create(&path, switchyard_control_plane::generate_secret)?;
                (
                    key,
                    format!("file:{}", path.display()),
                    format!("key in {}", path.display()),
                )
            }
        };
        validate_secret(&api_key).with_context(|| format!("the API key ({key_from})"))?;
        let (admin_token, token_from) = match non_empty_env(ADMIN_TOKEN_ENV) {
            Some(token) => (token, format!("admin token from {ADMIN_TOKEN_ENV}")),
            None => {
                let path = data_dir.join(ADMIN_TOKEN_FILE);
                let token = read_or_create(&path, switchyard_control_plane::generate_secret)?;
                (token, format!("admin token in {}", path.display()))
            }
        };
        validate_secret(&admin_token).with_context(|| format!("the {token_from}"))?;
        Ok(Self {
            api_key,
            admin_token,
            api_key_ref,
            origin: format!("{key_from}; {token_from}"),
        })
    }

    /// The bootstrap entry registering the API key in the default workspace.
    pub fn bootstrap_key(&self) -> BootstrapKey {
        BootstrapKey {
            workspace: "default".into(),
            name: "dev".into(),
            secret_ref: self.api_key_ref.clone(),
            allowed_models: vec![],
            limits: Default::default(),
        }
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// The file's secret, or a new one written to it (mode 0600) when it is missing.
fn read_or_create(path: &Path, generate: fn() -> String) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let secret = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// The admin token for CLI commands: the flag or environment, else the file
/// `switchyard dev` keeps in its data directory.
pub fn admin_token(given: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(token) = given.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .with_context(|| {
            format!(
                "no admin token: set {ADMIN_TOKEN_ENV} or --admin-token (or run from where `switchyard dev` keeps {})",
                path.display()
            )
        })
}
