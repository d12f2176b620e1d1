//! Rate limits at admission. A request is checked against its API key's and
//! its workspace's limits once it is routed (its token estimate is known by
//! then): prompt tokens plus the most it may generate. The token charge is
//! corrected by the real count when its trace is finished.

use std::sync::Arc;

use switchyard_domain::{KeyGrant, RateLimits};

use crate::edge::ApiError;
use crate::limits::{Cause, Limit, Limiter, Reservation, Scope};
use crate::request::ChatRequest;
use crate::snapshot::LiveSnapshot;

/// What an admitted request owes its token limits.
pub struct Ticket {
    limiter: Arc<Limiter>,
    reservation: Reservation,
}

impl Ticket {
    /// Charges the tokens the request really used instead of its estimate.
    pub fn settle(self, tokens: u64) {
        let Self {
            limiter,
            reservation,
        } = self;
        let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
        tokio::spawn(async move { limiter.settle(reservation, tokens).await });
    }
}

/// An admitted request: the ticket to settle, and the rate-limit headers
/// for its response.
#[derive(Default)]
pub struct Admitted {
    pub ticket: Option<Ticket>,
    pub headers: Vec<(&'static str, String)>,
}

fn limit(limits: RateLimits) -> Option<Limit> {
    (!limits.is_unlimited()).then(|| {
        Limit::per_minute(
            (limits.requests_per_minute > 0).then_some(limits.requests_per_minute),
            (limits.tokens_per_minute > 0).then_some(limits.tokens_per_minute),
        )
    })
}

pub async fn admit(
    limiter: &Arc<Limiter>,
    snapshot: &LiveSnapshot,
    grant: &KeyGrant,
    request: &ChatRequest,
) -> Result<Admitted, ApiError> {
    let routing = &snapshot.routing;
    let workspace = routing
        .workspaces
        .get(&request.workspace)
        .map(|w| w.limits)
        .unwrap_or_default();
    let mut limits = Vec::with_capacity(2);
    if let Some(l) = limit(grant.limits) {
        limits.push((Scope::Key(&grant.id), l));
    }
    if let Some(l) = limit(workspace) {
        limits.push((Scope::Workspace(&request.workspace), l));
    }
    if limits.is_empty() {
        return Ok(Admitted::default());
    }
    // While Redis is down, this node enforces its share of each limit.
    limiter.set_replicas(routing.telemetry.data_planes);
    let estimate = request
        .workload
        .input_tokens
        .saturating_add(request.workload.output_tokens);
    let admission = limiter
        .admit(&limits, u32::try_from(estimate).unwrap_or(u32::MAX))
        .await;
    let headers = admission.decision.headers();
    if let Some(denial) = admission.decision.denial {
        let message = match denial.cause {
            Cause::Limit { scope, dimension } => format!(
                "rate limit reached: the {} limit on {} per minute; retry after {:.3}s",
                scope.as_str(),
                dimension.as_str(),
                denial.retry_after.as_secs_f64()
            ),
            Cause::TooLarge { scope, dimension } => format!(
                "the request needs more {} than the {} limit allows in a minute ({estimate} tokens estimated: prompt plus max_tokens); lower max_tokens",
                dimension.as_str(),
                scope.as_str()
            ),
            Cause::Unavailable => {
                "rate limits cannot be checked right now (the shared limit store is unreachable); retry shortly".to_owned()
            }
        };
        return Err(ApiError::RateLimited { message, headers });
    }
    Ok(Admitted {
        ticket: admission.reservation.map(|reservation| Ticket {
            limiter: limiter.clone(),
            reservation,
        }),
        headers,
    })
}
