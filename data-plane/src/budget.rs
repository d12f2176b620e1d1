//! Spend caps per workspace per UTC day and month, shared by every data
//! plane through the rate limiter's Redis.
//!
//! Before a request runs, the most it may cost (the dearest target of its
//! fallback chain at the request's prompt and `max_tokens`) is reserved
//! against each cap, in one script call: refused when what was spent plus
//! what is reserved plus this would pass the cap. When its trace is finished
//! the reservation becomes the real cost. Amounts are kept in micro-dollars.
//!
//! Overshoot: none from concurrency (the check and the reservation are one
//! atomic step across the fleet). A request can cost more than its
//! reservation only when it did not bound its output (`max_tokens`) and ran
//! past the intent's default, or a provider bills differently than the
//! snapshot's prices: the fleet overshoots by at most that excess of the
//! requests in flight. While Redis is unreachable, each data plane allows its
//! share (1/n) of what was left when it last heard from Redis, so the fleet
//! stays under the cap; without Redis configured (one node), the node counts
//! alone from its start.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use redis::Script;
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use switchyard_domain::Budget;
use tokio::sync::Mutex;

const RESERVE: &str = r"
-- KEYS: per cap, its spent and reserved counters. ARGV: amount, then per
-- cap its limit and time to live (ms). Returns 0 and nothing else when
-- reserved, or the 1-based index of the cap that refused; then what each
-- cap had used (spent + reserved) before this request.
local amount = tonumber(ARGV[1])
local used = {}
local refused = 0
for i = 1, #KEYS / 2 do
  local u = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0') + tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  used[i] = u
  if refused == 0 and u + amount > tonumber(ARGV[2 * i]) then refused = i end
end
if refused == 0 then
  for i = 1, #KEYS / 2 do
    redis.call('INCRBY', KEYS[2 * i], amount)
    redis.call('PEXPIRE', KEYS[2 * i], ARGV[2 * i + 1])
  end
end
local reply = { refused }
for i = 1, #used do reply[#reply + 1] = used[i] end
return reply
";

const SETTLE: &str = r"
-- KEYS: per cap, its spent and reserved counters. ARGV: reserved, spent,
-- then per cap its time to live (ms).
for i = 1, #KEYS / 2 do
  redis.call('INCRBY', KEYS[2 * i - 1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[i + 2])
  if tonumber(redis.call('DECRBY', KEYS[2 * i], ARGV[1])) < 0 then redis.call('SET', KEYS[2 * i], 0) end
end
return 0
";

/// A cap's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    fn as_str(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }
}

/// One cap a request is checked against, in the current window.
#[derive(Debug, Clone)]
struct Window {
    period: Period,
    cap_micros: i64,
    /// Storage key of the window (the counters add `:s` and `:r`).
    key: String,
    /// When the window ends, in Unix milliseconds.
    resets_at_ms: i64,
}

/// What a request reserved, to settle when it is done.
#[derive(Debug)]
pub struct BudgetHold {
    windows: Vec<Window>,
    reserved_micros: i64,
    /// Made in process (Redis down or not configured).
    local: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub period: Period,
    pub cap_usd: f64,
    pub resets_at_ms: i64,
}

impl OverBudget {
    pub fn message(&self, workspace: &str) -> String {
        format!(
            "workspace {workspace:?} has reached its {} budget of ${:.2}; it resets at {} UTC",
            self.period.as_str(),
            self.cap_usd,
            utc_text(self.resets_at_ms)
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetDecisionLabels {
    /// "redis" (the fleet's shared counters) or "local" (this node's share).
    pub mode: &'static str,
    /// "allowed" or "denied".
    pub decision: &'static str,
}

pub struct Budgets {
    redis: Option<(ConnectionManager, Duration)>,
    /// Reservations against workspaces with a cap, by mode and outcome.
    decisions: Family<BudgetDecisionLabels, Counter>,
    reserve: Script,
    settle: Script,
    prefix: String,
    /// In-process counters (spent + reserved, micro-dollars) by window key.
    local: Mutex<HashMap<String, i64>>,
    /// What each window had used when Redis last answered.
    last_seen: Mutex<HashMap<String, i64>>,
}

fn micros(usd: f64) -> i64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).ceil() as i64
    } else {
        0
    }
}

impl Budgets {
    /// Shares `redis_url` with the rate limiter (lazily connected).
    pub fn new(redis_url: Option<&SecretString>, timeout: Duration, prefix: &str) -> Self {
        let redis = redis_url.and_then(|url| {
            let client = redis::Client::open(url.expose_secret()).ok()?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(0);
            ConnectionManager::new_lazy_with_config(client, config)
                .ok()
                .map(|m| (m, timeout))
        });
        Self {
            redis,
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            prefix: format!("{prefix}:budget"),
            decisions: Family::default(),
            local: Mutex::new(HashMap::new()),
            last_seen: Mutex::new(HashMap::new()),
        }
    }

    fn windows(&self, workspace: &str, budget: Budget, now_ms: i64) -> Vec<Window> {
        let day = now_ms.div_euclid(DAY_MS);
        let (year, month, _) = civil_from_days(day);
        let mut windows = Vec::with_capacity(2);
        if budget.daily_usd > 0.0 {
            windows.push(Window {
                period: Period::Day,
                cap_micros: micros(budget.daily_usd),
                key: format!("{}:{workspace}:d{day}", self.prefix),
                resets_at_ms: (day + 1) * DAY_MS,
            });
        }
        if budget.monthly_usd > 0.0 {
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            windows.push(Window {
                period: Period::Month,
                cap_micros: micros(budget.monthly_usd),
                key: format!("{}:{workspace}:m{year}-{month:02}", self.prefix),
                resets_at_ms: days_from_civil(next_year, next_month, 1) * DAY_MS,
            });
        }
        windows
    }

    /// Adds `budget_decisions_total` to `registry` (the data plane's).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "budget_decisions",
            "Spend-cap checks of requests of workspaces with a budget, by where they were made (redis, local) and outcome",
            self.decisions.clone(),
        );
    }

    /// Decisions so far with these labels.
    #[cfg(test)]
    fn decisions(&self, mode: &'static str, decision: &'static str) -> u64 {
        self.decisions
            .get_or_create(&BudgetDecisionLabels { mode, decision })
            .get()
    }

    fn decided(
        &self,
        mode: &'static str,
        result: Result<Option<BudgetHold>, OverBudget>,
    ) -> Result<Option<BudgetHold>, OverBudget> {
        let decision = if result.is_ok() { "allowed" } else { "denied" };
        self.decisions
            .get_or_create(&BudgetDecisionLabels { mode, decision })
            .inc();
        result
    }

    /// Reserves `estimate_usd` against the workspace's caps, or says which
    /// one refuses. `share` is this node's part of the fleet (1/n).
    pub async fn reserve(
        &self,
        workspace: &str,
        budget: Budget,
        estimate_usd: f64,
        share: f64,
        now_ms: i64,
    ) -> Result<Option<BudgetHold>, OverBudget> {
        let windows = self.windows(workspace, budget, now_ms);
        if windows.is_empty() {
            return Ok(None);
        }
        let amount = micros(estimate_usd);
        if let Some((manager, timeout)) = &self.redis {
            let mut invocation = self.reserve.prepare_invoke();
            invocation.arg(amount);
            for w in &windows {
                invocation
                    .key(format!("{}:s", w.key))
                    .key(format!("{}:r", w.key))
                    .arg(w.cap_micros)
                    .arg(ttl_ms(w, now_ms));
            }
            let mut connection = manager.clone();
            let reply = tokio::time::timeout(
                *timeout,
                invocation.invoke_async::<Vec<i64>>(&mut connection),
            )
            .await;
            if let Ok(Ok(reply)) = reply
                && let [refused, used @ ..] = reply.as_slice()
                && used.len() == windows.len()
            {
                let mut seen = self.last_seen.lock().await;
                for (w, u) in windows.iter().zip(used) {
                    seen.insert(w.key.clone(), *u);
                }
                drop(seen);
                let result = match usize::try_from(*refused)
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                {
                    None => Ok(Some(BudgetHold {
                        windows,
                        reserved_micros: amount,
                        local: false,
                    })),
                    Some(i) => Err(over(&windows[i.min(windows.len() - 1)])),
                };
                return self.decided("redis", result);
            }
            tracing::warn!(
                workspace,
                "budget store unreachable: enforcing this node's share of what was left"
            );
        }
        let result = self.reserve_locally(windows, amount, share).await;
        self.decided("local", result)
    }

    /// In process: this node's share of what the fleet had left when Redis
    /// last answered (the whole cap when it never did and there is no Redis).
    async fn reserve_locally(
        &self,
        windows: Vec<Window>,
        amount: i64,
        share: f64,
    ) -> Result<Option<BudgetHold>, OverBudget> {
        let seen = self.last_seen.lock().await;
        let mut local = self.local.lock().await;
        for w in &windows {
            let allowance = if self.redis.is_some() {
                let left =
                    (w.cap_micros - seen.get(&w.key).copied().unwrap_or(w.cap_micros)).max(0);
                (left as f64 * share.clamp(0.0, 1.0)) as i64
            } else {
                w.cap_micros
            };
            if local.get(&w.key).copied().unwrap_or(0) + amount > allowance {
                return Err(over(w));
            }
        }
        for w in &windows {
            *local.entry(w.key.clone()).or_insert(0) += amount;
        }
        Ok(Some(BudgetHold {
            windows,
            reserved_micros: amount,
            local: true,
        }))
    }

    /// Turns a reservation into the real cost.
    pub async fn settle(&self, hold: BudgetHold, cost_usd: f64, now_ms: i64) {
        let spent = micros(cost_usd);
        if hold.local {
            let mut local = self.local.lock().await;
            for w in &hold.windows {
                *local.entry(w.key.clone()).or_insert(0) += spent - hold.reserved_micros;
            }
            return;
        }
        let Some((manager, timeout)) = &self.redis else {
            return;
        };
        let mut invocation = self.settle.prepare_invoke();
        invocation.arg(hold.reserved_micros).arg(spent);
        for w in &hold.windows {
            invocation
                .key(format!("{}:s", w.key))
                .key(format!("{}:r", w.key))
                .arg(ttl_ms(w, now_ms));
        }
        let mut connection = manager.clone();
        let done = tokio::time::timeout(
            *timeout * 4,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
        if !matches!(done, Ok(Ok(_))) {
            // Counted locally instead, so this node's share stays honest.
            tracing::warn!("budget settlement did not reach the budget store");
            let mut local = self.local.lock().await;
            for w in &hold.windows {
                *local.entry(w.key.clone()).or_insert(0) += spent;
            }
        }
    }
}

fn over(w: &Window) -> OverBudget {
    OverBudget {
        period: w.period,
        cap_usd: w.cap_micros as f64 / 1e6,
        resets_at_ms: w.resets_at_ms,
    }
}

/// Counters outlive their window by a day, for late settlements.
fn ttl_ms(w: &Window, now_ms: i64) -> i64 {
    (w.resets_at_ms - now_ms).max(0) + DAY_MS
}

const DAY_MS: i64 = 86_400_000;

/// (year, month, day) of a day counted from 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn utc_text(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_arithmetic_round_trips() {
        for days in [-1, 0, 59, 365, 10_957, 20_000, 20_779] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2026-11-22 12:00 UTC.
        let now = days_from_civil(2026, 11, 22) * DAY_MS + 43_200_000;
        assert_eq!(utc_text(now), "2026-11-22 12:00");
        let budgets = Budgets::new(None, Duration::from_millis(50), "t");
        let windows = budgets.windows(
            "acme",
            Budget {
                daily_usd: 1.0,
                monthly_usd: 10.0,
            },
            now,
        );
        assert_eq!(utc_text(windows[0].resets_at_ms), "2026-11-23 00:00");
        assert_eq!(utc_text(windows[1].resets_at_ms), "2026-12-01 00:00");
        let december = days_from_civil(2026, 12, 31) * DAY_MS;
        let windows = budgets.windows(
            "acme",
            Budget {
                daily_usd: 0.0,
                monthly_usd: 5.0,
            },
            december,
        );
        assert_eq!(utc_text(windows[0].resets_at_ms), "2027-01-01 00:00");
    }

    #[tokio::test]
    async fn a_node_alone_counts_against_the_whole_cap() {
        let budgets = Budgets::new(None, Duration::from_millis(50), "t");
        let cap = Budget {
            daily_usd: 0.01,
            monthly_usd: 0.0,
        };
        let now = 1_700_000_000_000;
        let hold = budgets
            .reserve("w", cap, 0.004, 1.0, now)
            .await
            .unwrap()
            .unwrap();
        budgets.settle(hold, 0.002, now).await;
        // 0.002 spent: 0.004 more fits twice, not three times.
        let a = budgets.reserve("w", cap, 0.004, 1.0, now).await.unwrap();
        let b = budgets.reserve("w", cap, 0.004, 1.0, now).await.unwrap();
        assert!(a.is_some() && b.is_some());
        let refused = budgets
            .reserve("w", cap, 0.004, 1.0, now)
            .await
            .unwrap_err();
        assert_eq!(refused.period, Period::Day);
        assert!(
            refused.message("w").contains("daily budget of $0.01"),
            "{}",
            refused.message("w")
        );
        assert_eq!(budgets.decisions("local", "allowed"), 3);
        assert_eq!(budgets.decisions("local", "denied"), 1);
        assert_eq!(budgets.decisions("redis", "allowed"), 0);
    }
}
