//! Rate limits and budgets at admission. A request is checked once it is
//! routed (its token and cost estimates are known by then) against its API
//! key's and its workspace's rate limits (prompt tokens plus the most it may
//! generate), then against its workspace's spend caps (the dearest target
//! of its chain). The charges are corrected by the real tokens and cost
//! when its trace is finished.

use std::sync::Arc;

use switchyard_domain::{KeyGrant, RateLimits};

use crate::budget::{BudgetHold, Budgets};
use crate::edge::ApiError;
use crate::limits::{Cause, Limit, Limiter, Reservation, Scope};
use crate::request::ChatRequest;
use crate::scoring::{RoutePlan, ScoredCandidate};
use crate::snapshot::LiveSnapshot;

/// What an admitted request owes its token limits and its budgets.
#[derive(Default)]
pub struct Ticket {
    tokens: Option<(Arc<Limiter>, Reservation)>,
    spend: Option<(Arc<Budgets>, BudgetHold)>,
}

impl Ticket {
    /// Charges what the request really used instead of its estimates.
    pub fn settle(self, tokens: u64, cost_usd: f64) {
        let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
        if let Some((limiter, reservation)) = self.tokens {
            tokio::spawn(async move { limiter.settle(reservation, tokens).await });
        }
        if let Some((budgets, hold)) = self.spend {
            let now = crate::request::Received::now().unix_ms;
            tokio::spawn(async move { budgets.settle(hold, cost_usd, now).await });
        }
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
    budgets: &Arc<Budgets>,
    snapshot: &LiveSnapshot,
    grant: &KeyGrant,
    request: &ChatRequest,
    plan: &RoutePlan,
) -> Result<Admitted, ApiError> {
    let mut admitted = rate_limits(limiter, snapshot, grant, request).await?;
    let budget = snapshot
        .routing
        .workspaces
        .get(&request.workspace)
        .map(|w| w.budget)
        .unwrap_or_default();
    if budget.is_unlimited() {
        return Ok(admitted);
    }
    let estimate = plan
        .chain()
        .map(ScoredCandidate::estimated_cost_usd)
        .fold(0.0, f64::max);
    let now = crate::request::Received::now().unix_ms;
    match budgets
        .reserve(&request.workspace, budget, estimate, limiter.share(), now)
        .await
    {
        Ok(hold) => {
            if let (Some(ticket), Some(hold)) = (admitted.ticket.as_mut(), hold) {
                ticket.spend = Some((budgets.clone(), hold));
            }
            Ok(admitted)
        }
        Err(over) => {
            // Refused after all: nothing was used of the token charge.
            if let Some(ticket) = admitted.ticket.take() {
                ticket.settle(0, 0.0);
            }
            Err(ApiError::OverBudget {
                message: over.message(&request.workspace),
                retry_after_s: u64::try_from((over.resets_at_ms - now).max(1000) / 1000)
                    .unwrap_or(u64::MAX),
            })
        }
    }
}

async fn rate_limits(
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
        return Ok(Admitted {
            ticket: Some(Ticket::default()),
            headers: vec![],
        });
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
            // Configured to fail closed: the store is down, not the client
            // over its limit, so this is the server's 503 and not a 429.
            Cause::Unavailable => {
                return Err(ApiError::LimitsUnavailable(
                    "rate limits cannot be checked right now (the shared limit store is unreachable and limits fail closed); retry shortly".to_owned(),
                ));
            }
        };
        return Err(ApiError::RateLimited { message, headers });
    }
    Ok(Admitted {
        ticket: Some(Ticket {
            tokens: admission
                .reservation
                .map(|reservation| (limiter.clone(), reservation)),
            spend: None,
        }),
        headers,
    })
}
