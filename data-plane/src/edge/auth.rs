//! API keys at the edge: `Authorization: Bearer <key>` on HTTP, the same in
//! gRPC metadata. A key is known by the SHA-256 of its secret, from the
//! snapshot; it makes requests for its own workspace only, and only for the
//! models it lists (when it lists any). The key itself is never logged or
//! echoed back.

use switchyard_domain::{KeyGrant, secret_sha256};

use super::ApiError;
use crate::request::{ChatRequest, DEFAULT_WORKSPACE};
use crate::snapshot::LiveSnapshot;

/// The key's grant, for the caller of a request.
/// `authorization`: the raw value of the `Authorization` header (HTTP) or
/// `authorization` metadata entry (gRPC), if the request had one.
pub fn authenticate(
    snapshot: &LiveSnapshot,
    authorization: Option<&[u8]>,
) -> Result<KeyGrant, ApiError> {
    let value = authorization.ok_or_else(|| {
        ApiError::Unauthenticated(
            "missing API key: send the header `Authorization: Bearer <key>`".into(),
        )
    })?;
    let value = std::str::from_utf8(value)
        .ok()
        .filter(|v| v.is_ascii())
        .ok_or_else(|| {
            ApiError::Unauthenticated("the Authorization header must be ASCII".into())
        })?;
    let secret = bearer(value).ok_or_else(|| {
        ApiError::Unauthenticated("the Authorization header must be `Bearer <key>`".into())
    })?;
    snapshot
        .routing
        .keys
        .get(&secret_sha256(secret))
        .cloned()
        .ok_or_else(|| ApiError::Unauthenticated("invalid API key".into()))
}

/// The credential of `Bearer <credential>`; the scheme is case-insensitive.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// Puts the request in the key's workspace and checks the key may make it.
/// A request that names no workspace (or the default one) runs in the key's;
/// one that names another workspace is refused, unless the key may act for
/// any (the control plane's replay key).
pub fn authorize(grant: &KeyGrant, request: &mut ChatRequest) -> Result<(), ApiError> {
    if !grant.any_workspace {
        if request.workspace == DEFAULT_WORKSPACE {
            request.workspace.clone_from(&grant.workspace);
        } else if request.workspace != grant.workspace {
            return Err(ApiError::PermissionDenied(format!(
                "this API key belongs to workspace {:?} and may not make requests for workspace {:?}",
                grant.workspace, request.workspace
            )));
        }
    }
    if !grant.may_request(&request.model) {
        return Err(ApiError::PermissionDenied(format!(
            "this API key may not request model {:?}; it may request {}",
            request.model,
            grant.allowed_models.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{test_request, test_workload};
    use switchyard_domain::RateLimits;

    fn grant(workspace: &str, models: &[&str]) -> KeyGrant {
        KeyGrant {
            id: "key_1".into(),
            secret_sha256: secret_sha256("sy-secret"),
            workspace: workspace.into(),
            allowed_models: models.iter().map(|m| (*m).to_owned()).collect(),
            limits: RateLimits::default(),
            any_workspace: false,
        }
    }

    #[test]
    fn bearer_credentials_parse_strictly() {
        assert_eq!(bearer("Bearer sy-abc"), Some("sy-abc"));
        assert_eq!(bearer("bearer  sy-abc "), Some("sy-abc"));
        assert_eq!(bearer("Basic dXNlcg=="), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("sy-abc"), None);
    }

    #[test]
    fn requests_run_in_the_keys_workspace_and_models() {
        let mut request = test_request("gpt-4o", None, test_workload(10, 10));
        authorize(&grant("team", &[]), &mut request).unwrap();
        assert_eq!(request.workspace, "team");

        let mut other = test_request("gpt-4o", None, test_workload(10, 10));
        other.workspace = "finance".into();
        let e = authorize(&grant("team", &[]), &mut other).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::FORBIDDEN);

        let mut model = test_request("gpt-4o", None, test_workload(10, 10));
        let e = authorize(&grant("team", &["auto"]), &mut model).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::FORBIDDEN);
        assert!(!e.to_string().contains("sy-secret"));

        let mut replay = test_request("gpt-4o", None, test_workload(10, 10));
        replay.workspace = "finance".into();
        let any = KeyGrant {
            any_workspace: true,
            ..grant("", &[])
        };
        authorize(&any, &mut replay).unwrap();
        assert_eq!(replay.workspace, "finance");
    }
}
