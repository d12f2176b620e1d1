//! `switchyard keys`: API keys through the control plane's AccessService.
//! A key's secret is printed once, when it is created or rotated.

use anyhow::bail;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::access_service_client::AccessServiceClient;

use crate::connect::ControlPlaneArgs;
use crate::output::{json, status_error, table};

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(flatten)]
    control_plane: ControlPlaneArgs,
    /// Print JSON (proto3 mapping) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Issues a key of a workspace; prints its secret, which is not shown again.
    Create {
        /// The workspace the key makes requests for ("default" or a registered one).
        #[arg(long, default_value = "default")]
        workspace: String,
        /// What the key is for, e.g. billing-service.
        #[arg(long)]
        name: String,
        /// A model the key may request (repeat for more); none means any.
        #[arg(long = "model")]
        models: Vec<String>,
        /// The key's own requests-per-minute limit.
        #[arg(long, default_value_t = 0)]
        rpm: u32,
        /// The key's own tokens-per-minute limit.
        #[arg(long, default_value_t = 0)]
        tpm: u32,
    },
    /// Keys (never their secrets), newest first.
    List {
        #[arg(long)]
        workspace: Option<String>,
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
    },
    /// A new secret for a key; the old one stops working.
    Rotate { id: String },
    /// The key stops working everywhere with the next snapshot.
    Revoke { id: String },
}

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let mut client = AccessServiceClient::with_interceptor(
        args.control_plane.connect().await?,
        args.control_plane.admin()?,
    );
    let out = match args.command {
        KeysCommand::Create {
            workspace,
            name,
            models,
            rpm,
            tpm,
        } => {
            let issued = client
                .create_api_key(pb::CreateApiKeyRequest {
                    workspace,
                    name,
                    allowed_models: models,
                    limits: Some(pb::RateLimits {
                        requests_per_minute: rpm,
                        tokens_per_minute: tpm,
                    }),
                    secret: String::new(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            issued_text(&issued, args.json)?
        }
        KeysCommand::List { workspace, all } => {
            let response = client
                .list_api_keys(pb::ListApiKeysRequest {
                    workspace: workspace.unwrap_or_default(),
                    include_revoked: all,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if args.json {
                json(&response, "switchyard.v1.ListApiKeysResponse")?
            } else {
                keys_table(&response.keys)
            }
        }
        KeysCommand::Rotate { id } => {
            let issued = client
                .rotate_api_key(pb::RotateApiKeyRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            issued_text(&issued, args.json)?
        }
        KeysCommand::Revoke { id } => {
            let key = client
                .revoke_api_key(pb::RevokeApiKeyRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            if args.json {
                json(&key, "switchyard.v1.ApiKey")?
            } else {
                keys_table(&[key])
            }
        }
    };
    println!("{}", out.trim_end());
    Ok(())
}

fn issued_text(issued: &pb::IssuedApiKey, as_json: bool) -> anyhow::Result<String> {
    if as_json {
        return json(issued, "switchyard.v1.IssuedApiKey");
    }
    let Some(key) = &issued.key else {
        bail!("the control plane answered without the key");
    };
    Ok(format!(
        "{}\nsecret: {}\n(shown once: store it now)",
        keys_table(std::slice::from_ref(key)).trim_end(),
        issued.secret
    ))
}

fn keys_table(keys: &[pb::ApiKey]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let limits = k.limits.unwrap_or_default();
            vec![
                k.id.clone(),
                k.workspace.clone(),
                k.name.clone(),
                format!("{}…", k.prefix),
                if k.allowed_models.is_empty() {
                    "any".into()
                } else {
                    k.allowed_models.join(",")
                },
                format!(
                    "{}/{}",
                    limits.requests_per_minute, limits.tokens_per_minute
                ),
                if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                }
                .into(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "WORKSPACE",
            "NAME",
            "SECRET",
            "MODELS",
            "RPM/TPM",
            "STATE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_printed_with_its_key_and_a_warning() {
        let issued = pb::IssuedApiKey {
            key: Some(pb::ApiKey {
                id: "key_0123".into(),
                workspace: "team".into(),
                name: "svc".into(),
                prefix: "sy-AbCd".into(),
                ..Default::default()
            }),
            secret: "sy-AbCdEf".into(),
        };
        let text = issued_text(&issued, false).unwrap();
        assert!(
            text.contains("key_0123") && text.contains("sy-AbCdEf") && text.contains("shown once")
        );
        let json = issued_text(&issued, true).unwrap();
        assert!(json.contains("\"secret\": \"sy-AbCdEf\""), "{json}");
    }
}
