//! A target's health state, with hysteresis. Pure: the aggregator feeds it the
//! last ten seconds of evidence every tick.
//!
//! - 429s mean saturation, not sickness: RATE_LIMITED until the provider's
//!   Retry-After or a growing back-off, then back to healthy.
//! - Half the judged attempts failing ejects the target for a back-off that
//!   doubles with each ejection in a row and shrinks again after calm minutes.
//!   When it ends, probe results gathered meanwhile decide: failures re-eject
//!   at once, otherwise the target returns with a clean record.
//! - A success rate that is an outlier against its peers makes it DEGRADED
//!   after two bad evaluations in a row; five good ones make it healthy again.

use std::time::Duration;

use switchyard_domain::{HealthState, TargetTelemetry};

use super::window::Counts;

#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    /// Judged attempts (429s aside) needed in the evaluation window to judge at all.
    pub min_requests: u64,
    /// Failure share that ejects.
    pub eject_failure_rate: f64,
    /// Failures in a row on one data plane that eject (its breaker opens at the same count).
    pub eject_consecutive_failures: u64,
    /// Below the peers' success rate by more than this (or 1.9 standard
    /// deviations, if more) is an outlier.
    pub degraded_margin: f64,
    pub enter_degraded_after: u32,
    pub leave_degraded_after: u32,
    /// Evaluations with too little traffic to judge and no failure that heal a degraded target.
    pub leave_degraded_quietly_after: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Share of 429s among attempts that makes a target rate-limited.
    pub rate_limited_share: f64,
    pub base_rate_limit: Duration,
    pub max_rate_limit: Duration,
    /// Calm time after which one past ejection is forgiven.
    pub forgive_after: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            min_requests: 5,
            eject_failure_rate: 0.5,
            eject_consecutive_failures: 5,
            degraded_margin: 0.1,
            enter_degraded_after: 2,
            leave_degraded_after: 5,
            leave_degraded_quietly_after: 30,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            rate_limited_share: 0.5,
            base_rate_limit: Duration::from_secs(5),
            max_rate_limit: Duration::from_secs(60),
            forgive_after: Duration::from_secs(60),
        }
    }
}

/// What "normal" is among a target's peers.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub success_rate: f64,
    pub margin: f64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `base` doubled `times` times, capped.
fn backoff(base: Duration, times: u32, cap: Duration) -> i64 {
    ms(base.saturating_mul(1u32 << times.min(16)).min(cap))
}

#[derive(Debug, Clone)]
pub struct TargetState {
    pub state: HealthState,
    pub since_ms: i64,
    /// For RATE_LIMITED and EJECTED: when the state ends.
    pub until_ms: i64,
    /// Ejections in a row; each one doubles the next back-off.
    pub ejections: u32,
    rate_limits: u32,
    bad_streak: u32,
    good_streak: u32,
    /// Evaluations in a row with too little traffic to judge and no failure.
    quiet_streak: u32,
    /// Evidence from windows that ended before this is ignored.
    pub evidence_since_ms: i64,
    /// When a past ejection or rate limit was last forgiven (or the state began).
    forgiven_at_ms: i64,
    pub reason: String,
}

impl TargetState {
    pub fn new(now_ms: i64) -> Self {
        Self {
            state: HealthState::Healthy,
            since_ms: now_ms,
            until_ms: 0,
            ejections: 0,
            rate_limits: 0,
            bad_streak: 0,
            good_streak: 0,
            quiet_streak: 0,
            evidence_since_ms: 0,
            forgiven_at_ms: now_ms,
            reason: "no evidence against it".into(),
        }
    }

    /// The verdict a previous leader published, carried into a new term so a
    /// failover neither lets an ejected target back early nor forgets a
    /// degraded one. Evidence starts afresh from now.
    pub fn resumed(verdict: &TargetTelemetry, now_ms: i64) -> Self {
        let mut state = Self::new(now_ms);
        state.state = verdict.state;
        state.until_ms = verdict.state_until_ms;
        state.evidence_since_ms = now_ms;
        match verdict.state {
            HealthState::Ejected => state.ejections = 1,
            HealthState::RateLimited => state.rate_limits = 1,
            HealthState::Healthy | HealthState::Degraded => {}
        }
        state.reason = "carried over from the previous leader".into();
        state
    }

    fn enter(&mut self, state: HealthState, now_ms: i64, until_ms: i64, reason: String) {
        if state != self.state {
            self.since_ms = now_ms;
            self.bad_streak = 0;
            self.good_streak = 0;
            self.quiet_streak = 0;
        }
        self.state = state;
        self.until_ms = until_ms;
        self.reason = reason;
    }

    fn eject(&mut self, now_ms: i64, config: &HealthConfig, why: String) {
        let span = backoff(config.base_ejection, self.ejections, config.max_ejection);
        self.ejections += 1;
        self.evidence_since_ms = now_ms;
        let reason = format!(
            "{why}; ejected for {} s (ejection {} in a row)",
            span / 1000,
            self.ejections
        );
        self.enter(HealthState::Ejected, now_ms, now_ms + span, reason);
    }

    fn good_evaluation(
        &mut self,
        now_ms: i64,
        config: &HealthConfig,
        why: impl FnOnce() -> String,
    ) {
        self.good_streak += 1;
        self.bad_streak = 0;
        if self.state == HealthState::Degraded && self.good_streak >= config.leave_degraded_after {
            let reason = format!("{} for {} evaluations", why(), self.good_streak);
            self.enter(HealthState::Healthy, now_ms, 0, reason);
        }
    }

    /// One evaluation. `recent` holds the windows since `evidence_since_ms`
    /// within the evaluation window; `may_eject` is false when ejecting would
    /// leave fewer than half of a model's targets.
    pub fn step(
        &mut self,
        now_ms: i64,
        recent: &Counts,
        baseline: Baseline,
        may_eject: bool,
        config: &HealthConfig,
    ) {
        let judged = recent.judged();
        let failure_rate = if judged == 0 {
            0.0
        } else {
            recent.failures() as f64 / judged as f64
        };
        match self.state {
            HealthState::Ejected | HealthState::RateLimited if now_ms < self.until_ms => {
                if self.state == HealthState::RateLimited
                    && recent.retry_after_until_ms > self.until_ms
                {
                    self.until_ms = recent.retry_after_until_ms;
                }
                return;
            }
            HealthState::Ejected => {
                // The back-off is over; what probes saw meanwhile decides.
                if judged > 0 && failure_rate >= config.eject_failure_rate && may_eject {
                    let why = format!(
                        "probes still failing after the ejection ({} of {judged} failed)",
                        recent.failures()
                    );
                    self.eject(now_ms, config, why);
                    return;
                }
                self.evidence_since_ms = now_ms;
                let reason = format!(
                    "back after a {} s ejection ({} probe(s) succeeded meanwhile)",
                    (self.until_ms - self.since_ms) / 1000,
                    recent.successes
                );
                self.forgiven_at_ms = now_ms;
                self.enter(HealthState::Healthy, now_ms, 0, reason);
                return;
            }
            HealthState::RateLimited => {
                self.evidence_since_ms = now_ms;
                self.forgiven_at_ms = now_ms;
                self.enter(HealthState::Healthy, now_ms, 0, "rate limit over".into());
                return;
            }
            HealthState::Healthy | HealthState::Degraded => {}
        }

        let rate_limited = recent.rate_limited();
        let saturated = recent.attempts >= config.min_requests
            && rate_limited as f64 >= config.rate_limited_share * recent.attempts as f64;
        if saturated || recent.retry_after_until_ms > now_ms {
            let backoff_until = now_ms
                + backoff(
                    config.base_rate_limit,
                    self.rate_limits,
                    config.max_rate_limit,
                );
            let until = backoff_until.max(recent.retry_after_until_ms);
            self.rate_limits += 1;
            let reason = format!(
                "{rate_limited} of {} attempts answered 429 in the last 10 s; skipped for {} s",
                recent.attempts,
                (until - now_ms) / 1000
            );
            self.enter(HealthState::RateLimited, now_ms, until, reason);
            return;
        }

        let run = recent.consecutive_failures;
        let failing = judged >= config.min_requests && failure_rate >= config.eject_failure_rate;
        if failing || run >= config.eject_consecutive_failures {
            let why = if failing {
                format!(
                    "{} of {judged} attempts failed in the last 10 s",
                    recent.failures()
                )
            } else {
                format!("{run} failures in a row on a data plane")
            };
            if may_eject {
                self.eject(now_ms, config, why);
            } else {
                let reason = format!(
                    "{why}; not ejected: that would leave fewer than half of its model's targets"
                );
                self.enter(HealthState::Degraded, now_ms, 0, reason);
            }
            return;
        }
        if judged >= config.min_requests {
            let success_rate = 1.0 - failure_rate;
            let floor = baseline.success_rate - baseline.margin;
            if success_rate < floor {
                self.bad_streak += 1;
                self.good_streak = 0;
                if self.state == HealthState::Healthy
                    && self.bad_streak >= config.enter_degraded_after
                {
                    let reason = format!(
                        "success rate {:.1} % over the last 10 s against its peers' {:.1} % (outlier below {:.1} %)",
                        success_rate * 100.0,
                        baseline.success_rate * 100.0,
                        floor * 100.0
                    );
                    self.enter(HealthState::Degraded, now_ms, 0, reason);
                }
            } else if success_rate >= baseline.success_rate - baseline.margin / 2.0 {
                self.good_evaluation(now_ms, config, || {
                    format!(
                        "success rate {:.1} % back in line with its peers",
                        success_rate * 100.0
                    )
                });
            }
        } else if recent.failures() == 0 {
            // Too little traffic to judge, and nothing against it: a degraded
            // target that routing now avoids must not stay degraded for want
            // of evidence, but silence heals slower than successes do.
            self.quiet_streak = self.quiet_streak.saturating_add(1);
            if self.state == HealthState::Degraded
                && self.quiet_streak >= config.leave_degraded_quietly_after
            {
                let reason = format!(
                    "no failure in {} evaluations, with too little traffic to judge",
                    self.quiet_streak
                );
                self.enter(HealthState::Healthy, now_ms, 0, reason);
            }
        } else {
            self.quiet_streak = 0;
        }

        if now_ms - self.forgiven_at_ms >= ms(config.forgive_after) {
            self.ejections = self.ejections.saturating_sub(1);
            self.rate_limits = self.rate_limits.saturating_sub(1);
            self.forgiven_at_ms = now_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use switchyard_proto::v1 as pb;

    use super::*;

    const PEERS: Baseline = Baseline {
        success_rate: 0.99,
        margin: 0.1,
    };

    fn counts(ok: u64, failed: u64, limited: u64) -> Counts {
        let mut errors = BTreeMap::new();
        errors.insert(pb::ErrorClass::Transient as i32, failed);
        errors.insert(pb::ErrorClass::RateLimited as i32, limited);
        Counts {
            attempts: ok + failed + limited,
            successes: ok,
            errors,
            ..Default::default()
        }
    }

    #[test]
    fn failures_eject_with_doubling_back_off_and_probes_decide_the_return() {
        let config = HealthConfig::default();
        let mut s = TargetState::new(0);
        s.step(1_000, &counts(2, 8, 0), PEERS, true, &config);
        assert_eq!(
            (s.state, s.until_ms, s.ejections),
            (HealthState::Ejected, 11_000, 1)
        );
        // Still ejected, whatever arrives, until the back-off ends.
        s.step(5_000, &counts(50, 0, 0), PEERS, true, &config);
        assert_eq!(s.state, HealthState::Ejected);
        // Probes failed meanwhile: ejected again for twice as long.
        s.step(11_000, &counts(0, 2, 0), PEERS, true, &config);
        assert_eq!(
            (s.state, s.until_ms, s.ejections),
            (HealthState::Ejected, 31_000, 2)
        );
        // Probes succeeded: back, with a clean record.
        s.step(31_000, &counts(2, 0, 0), PEERS, true, &config);
        assert_eq!(
            (s.state, s.evidence_since_ms),
            (HealthState::Healthy, 31_000)
        );
        // Calm minutes forgive past ejections.
        s.step(95_000, &counts(20, 0, 0), PEERS, true, &config);
        assert_eq!(s.ejections, 1);
    }

    #[test]
    fn a_run_of_failures_on_one_node_ejects_even_when_the_window_looks_mixed() {
        let config = HealthConfig::default();
        let mut s = TargetState::new(0);
        let mut mixed = counts(10, 6, 0);
        mixed.consecutive_failures = 5;
        s.step(1_000, &mixed, PEERS, true, &config);
        assert_eq!(s.state, HealthState::Ejected);
        assert!(s.reason.contains("5 failures in a row"), "{}", s.reason);
    }

    #[test]
    fn ejection_is_refused_when_it_would_empty_the_model() {
        let mut s = TargetState::new(0);
        s.step(
            1_000,
            &counts(0, 10, 0),
            PEERS,
            false,
            &HealthConfig::default(),
        );
        assert_eq!(s.state, HealthState::Degraded);
        assert!(s.reason.contains("fewer than half"), "{}", s.reason);
    }

    #[test]
    fn rate_limits_are_saturation_not_sickness() {
        let config = HealthConfig::default();
        let mut s = TargetState::new(0);
        s.step(1_000, &counts(3, 0, 7), PEERS, true, &config);
        assert_eq!(
            (s.state, s.until_ms, s.ejections),
            (HealthState::RateLimited, 6_000, 0)
        );
        // A Retry-After further out extends it.
        let mut later = counts(0, 0, 1);
        later.retry_after_until_ms = 9_000;
        s.step(2_000, &later, PEERS, true, &config);
        assert_eq!(s.until_ms, 9_000);
        s.step(9_000, &counts(0, 0, 0), PEERS, true, &config);
        assert_eq!(s.state, HealthState::Healthy);
    }

    #[test]
    fn degraded_needs_two_bad_evaluations_and_five_good_ones_to_leave() {
        let config = HealthConfig::default();
        let mut s = TargetState::new(0);
        let poor = counts(80, 20, 0);
        s.step(1_000, &poor, PEERS, true, &config);
        assert_eq!(s.state, HealthState::Healthy);
        s.step(2_000, &poor, PEERS, true, &config);
        assert_eq!(s.state, HealthState::Degraded);
        for t in 0..4 {
            s.step(3_000 + t * 1000, &counts(100, 0, 0), PEERS, true, &config);
            assert_eq!(s.state, HealthState::Degraded);
        }
        s.step(8_000, &counts(100, 0, 0), PEERS, true, &config);
        assert_eq!(s.state, HealthState::Healthy);
        // Too little evidence judges nothing…
        let mut quiet = TargetState::new(0);
        quiet.step(1_000, &counts(0, 4, 0), PEERS, true, &config);
        assert_eq!(quiet.state, HealthState::Healthy);
        // …but a degraded target that routing avoids recovers once failures stop.
        s.step(9_000, &poor, PEERS, true, &config);
        s.step(10_000, &poor, PEERS, true, &config);
        assert_eq!(s.state, HealthState::Degraded);
        for t in 0..4 {
            s.step(11_000 + t * 1000, &counts(0, 1, 0), PEERS, true, &config);
            assert_eq!(
                s.state,
                HealthState::Degraded,
                "a failure keeps it degraded"
            );
        }
        for t in 0..29 {
            s.step(20_000 + t * 1000, &counts(1, 0, 0), PEERS, true, &config);
            assert_eq!(s.state, HealthState::Degraded, "silence heals slowly");
        }
        s.step(49_000, &counts(1, 0, 0), PEERS, true, &config);
        assert_eq!(s.state, HealthState::Healthy);
    }
}
