//! `ApiError`: everything a client can be told went wrong, with its HTTP status,
//! OpenAI's error body, its gRPC status and a low-cardinality kind for metrics.
//! Messages never carry keys or provider URLs.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::{Failure, FailureKind};
use crate::providers::ErrorClass;
use crate::scoring::RouteError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A workspace's spend cap is reached until `retry_after_s` from now.
    #[error("{message}")]
    OverBudget { message: String, retry_after_s: u64 },
    /// Over a rate limit; the headers say which and for how long.
    #[error("{message}")]
    RateLimited {
        message: String,
        headers: Vec<(&'static str, String)>,
    },
    /// Limits are configured to fail closed and cannot be checked now.
    #[error("{0}")]
    LimitsUnavailable(String),
    #[error("{0}")]
    ModelNotFound(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no routing snapshot yet: the data plane has not heard from the control plane")]
    NotReady,
    /// The node is shutting down and cut the request at the end of its grace.
    #[error("{0}")]
    ShuttingDown(String),
    #[error("{0}")]
    NoEligibleTarget(String),
    #[error("{message}")]
    Upstream { class: ErrorClass, message: String },
    #[error("unknown route {0}")]
    UnknownRoute(String),
    /// The request's execution ended without an answer; a bug, logged where it happens.
    #[error("the request ended without an answer")]
    Internal,
}

impl ApiError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        let message = message.into();
        Self::InvalidRequest {
            message: if param.is_empty() {
                message
            } else {
                format!("{param}: {message}")
            },
            param: (!param.is_empty()).then_some(param),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } | Self::OverBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ModelNotFound(_) | Self::UnknownRoute(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotReady
            | Self::NoEligibleTarget(_)
            | Self::LimitsUnavailable(_)
            | Self::ShuttingDown(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Upstream { class, .. } => match class {
                ErrorClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
                ErrorClass::Content | ErrorClass::ContextLength => StatusCode::BAD_REQUEST,
                ErrorClass::Cancelled => {
                    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
                }
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// Low-cardinality name for metrics and the error body's `code`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Unauthenticated(_) => "invalid_api_key",
            Self::PermissionDenied(_) => "permission_denied",
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::OverBudget { .. } => "budget_exceeded",
            Self::LimitsUnavailable(_) => "rate_limits_unavailable",
            Self::ModelNotFound(_) => "model_not_found",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NotReady => "not_ready",
            Self::ShuttingDown(_) => "shutting_down",
            Self::NoEligibleTarget(_) => "no_eligible_target",
            Self::UnknownRoute(_) => "unknown_route",
            Self::Internal => "internal",
            Self::Upstream { class, .. } => match class {
                ErrorClass::Transient => "upstream_transient",
                ErrorClass::RateLimited => "upstream_rate_limited",
                ErrorClass::Timeout => "upstream_timeout",
                ErrorClass::Auth => "upstream_auth",
                ErrorClass::Content => "upstream_rejected_request",
                ErrorClass::ProviderDown => "upstream_unreachable",
                ErrorClass::Protocol => "upstream_protocol",
                ErrorClass::Cancelled => "cancelled",
                ErrorClass::Configuration => "upstream_unconfigured",
                ErrorClass::ContextLength => "context_length_exceeded",
            },
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "authentication_error",
            Self::PermissionDenied(_) => "permission_error",
            Self::RateLimited { .. } => "rate_limit_error",
            Self::OverBudget { .. } => "insufficient_quota",
            Self::InvalidRequest { .. }
            | Self::ModelNotFound(_)
            | Self::PayloadTooLarge(_)
            | Self::UnsupportedMediaType(_)
            | Self::UnknownRoute(_) => "invalid_request_error",
            Self::Upstream {
                class: ErrorClass::RateLimited,
                ..
            } => "rate_limit_error",
            Self::Upstream {
                class: ErrorClass::Content | ErrorClass::ContextLength,
                ..
            } => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// OpenAI's error body.
    pub fn body(&self) -> serde_json::Value {
        let param = match self {
            Self::InvalidRequest { param, .. } => param.clone(),
            Self::ModelNotFound(_) => Some("model".to_owned()),
            _ => None,
        };
        json!({ "error": { "message": self.to_string(), "type": self.error_type(), "param": param, "code": self.kind() } })
    }

    pub fn to_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            Self::InvalidRequest { .. }
            | Self::PayloadTooLarge(_)
            | Self::UnsupportedMediaType(_) => tonic::Status::invalid_argument(message),
            Self::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            Self::PermissionDenied(_) => tonic::Status::permission_denied(message),
            Self::RateLimited { .. } | Self::OverBudget { .. } => {
                tonic::Status::resource_exhausted(message)
            }
            Self::ModelNotFound(_) | Self::UnknownRoute(_) => tonic::Status::not_found(message),
            Self::NotReady
            | Self::NoEligibleTarget(_)
            | Self::LimitsUnavailable(_)
            | Self::ShuttingDown(_) => tonic::Status::unavailable(message),
            Self::Internal => tonic::Status::internal(message),
            Self::Upstream { class, .. } => match class {
                ErrorClass::RateLimited => tonic::Status::resource_exhausted(message),
                ErrorClass::Timeout => tonic::Status::deadline_exceeded(message),
                ErrorClass::Content | ErrorClass::ContextLength => {
                    tonic::Status::invalid_argument(message)
                }
                ErrorClass::Cancelled => tonic::Status::cancelled(message),
                _ => tonic::Status::unavailable(message),
            },
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::UnknownModel(_) => Self::ModelNotFound(e.to_string()),
            RouteError::UnknownStrategy(_) => Self::invalid("strategy", e.to_string()),
            RouteError::UnknownWorkspace(_) => Self::invalid("workspace", e.to_string()),
        }
    }
}

impl From<&Failure> for ApiError {
    fn from(f: &Failure) -> Self {
        match f.kind {
            FailureKind::NoEligibleTarget => Self::NoEligibleTarget(f.message.clone()),
            FailureKind::ShuttingDown => Self::ShuttingDown(f.message.clone()),
            FailureKind::Upstream(class) => Self::Upstream {
                class,
                message: f.message.clone(),
            },
        }
    }
}

/// The kind of the error a response answers, for the edge's error metric.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);

/// Marks a refused request on its span: its kind, and an error status when
/// the fault is the server's.
pub fn note_rejection(span: &tracing::Span, error: &ApiError) {
    crate::spans::request_rejected(span, error.kind(), error.status().is_server_error());
}

/// Adds `(name, value)` pairs (lower-case names, ASCII values) to a response.
pub fn append_headers(response: &mut Response, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(value) = axum::http::HeaderValue::try_from(value.as_str()) {
            response
                .headers_mut()
                .append(axum::http::HeaderName::from_static(name), value);
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        response.extensions_mut().insert(ErrorKind(self.kind()));
        match &self {
            Self::Unauthenticated(_) => {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            Self::RateLimited { headers, .. } => append_headers(&mut response, headers),
            Self::OverBudget { retry_after_s, .. } => {
                append_headers(&mut response, &[("retry-after", retry_after_s.to_string())]);
            }
            Self::LimitsUnavailable(_) | Self::ShuttingDown(_) => {
                append_headers(&mut response, &[("retry-after", "1".to_owned())]);
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_openai_shape_and_name_the_field() {
        let e = ApiError::invalid("messages[0].role", "unknown variant `robot`");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let body = e.body();
        assert_eq!(body["error"]["param"], "messages[0].role");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("messages[0].role: ")
        );
    }

    #[test]
    fn upstream_classes_map_to_statuses() {
        let e = |class| ApiError::Upstream {
            class,
            message: String::new(),
        };
        assert_eq!(
            e(ErrorClass::RateLimited).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(e(ErrorClass::Timeout).status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(e(ErrorClass::Transient).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            e(ErrorClass::Content).to_status().code(),
            tonic::Code::InvalidArgument
        );
    }
}
