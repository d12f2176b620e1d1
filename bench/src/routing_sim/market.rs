//! The simulated market: five targets serving the alias `chat`, whose
//! latency, error rate and price drift by a bounded random walk, one of which
//! has an outage and recovers; what one attempt on a target does; and what a
//! request's outcome is worth (the utility every router is judged by).
//!
//! Everything here is a pure function of the seed and virtual time, so every
//! router meets the same market: the same drift, the same outage, the same
//! arrivals, and the same draw for the same attempt on the same target
//! (common random numbers), which keeps the comparison between routers sharp.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchyard_domain::Tier;

/// The model name every request asks for; every target answers to it.
pub const ALIAS: &str = "chat";
/// Every request: a chat turn of 1,000 tokens in and 300 out, streamed.
pub const INPUT_TOKENS: u64 = 1_000;
pub const OUTPUT_TOKENS: u64 = 300;

/// A target's starting point.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub provider: &'static str,
    pub model: &'static str,
    pub tier: Tier,
    /// USD per million tokens.
    pub input_price: f64,
    pub output_price: f64,
    /// Mean time to first token.
    pub ttft_ms: f64,
    pub tokens_per_second: f64,
    /// Share of attempts that fail (HTTP 5xx) outside an outage.
    pub error_rate: f64,
}

/// The market at its starting point, in registry order (cheapest first).
pub const PROFILES: [Profile; 5] = [
    Profile {
        provider: "swift",
        model: "swift-mini",
        tier: Tier::Economy,
        input_price: 0.10,
        output_price: 0.40,
        ttft_ms: 350.0,
        tokens_per_second: 150.0,
        error_rate: 0.01,
    },
    Profile {
        provider: "nimbus",
        model: "nimbus-lite",
        tier: Tier::Economy,
        input_price: 0.15,
        output_price: 0.60,
        ttft_ms: 450.0,
        tokens_per_second: 120.0,
        error_rate: 0.02,
    },
    Profile {
        provider: "orbit",
        model: "orbit-plus",
        tier: Tier::Standard,
        input_price: 0.80,
        output_price: 3.20,
        ttft_ms: 700.0,
        tokens_per_second: 70.0,
        error_rate: 0.03,
    },
    Profile {
        provider: "atlas",
        model: "atlas-pro",
        tier: Tier::Standard,
        input_price: 1.25,
        output_price: 5.00,
        ttft_ms: 450.0,
        tokens_per_second: 110.0,
        error_rate: 0.01,
    },
    Profile {
        provider: "summit",
        model: "summit-max",
        tier: Tier::Frontier,
        input_price: 3.00,
        output_price: 15.00,
        ttft_ms: 900.0,
        tokens_per_second: 60.0,
        error_rate: 0.005,
    },
];

/// Drift: every 10 to 30 s each target takes one step of a random walk.
const DRIFT_EVERY_MS: (f64, f64) = (10_000.0, 30_000.0);
/// Latency is multiplied by exp(N(0, σ)) per step, kept within these factors.
const LATENCY_STEP: f64 = 0.12;
const LATENCY_BOUNDS: (f64, f64) = (0.6, 1.8);
/// The error rate moves by N(0, σ) per step, kept within these bounds.
const ERROR_STEP: f64 = 0.006;
const ERROR_BOUNDS: (f64, f64) = (0.002, 0.06);
/// Prices are multiplied by exp(N(0, σ)) per step, kept within these factors.
const PRICE_STEP: f64 = 0.04;
const PRICE_BOUNDS: (f64, f64) = (0.8, 1.25);

/// Per-attempt jitter: log-normal, mean-preserving.
const TTFT_SIGMA: f64 = 0.3;
const GENERATION_SIGMA: f64 = 0.15;
/// A 5xx outside an outage arrives after 100 ms to 1 s; inside one after 200 to 600 ms.
const ERROR_MS: (f64, f64) = (100.0, 1_000.0);
const OUTAGE_ERROR_MS: (f64, f64) = (200.0, 600.0);

/// What is simulated, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub seed: u64,
    /// Run before measuring, so telemetry and breakers are warm (virtual ms).
    pub warmup_ms: i64,
    /// The measured span, starting at virtual time 0.
    pub duration_ms: i64,
    /// Poisson arrivals per second.
    pub rate_per_s: f64,
    pub nodes: usize,
    pub outage_target: usize,
    /// Every attempt on the outage target fails from the first to the second (virtual ms).
    pub outage: (i64, i64),
}

impl Scenario {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            warmup_ms: 60_000,
            duration_ms: 300_000,
            rate_per_s: 50.0,
            nodes: 4,
            outage_target: 0,
            outage: (120_000, 180_000),
        }
    }
}

/// A target's drifting state from `at_ms` on.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub at_ms: i64,
    /// Factor on time to first token and generation time.
    pub latency: f64,
    pub error_rate: f64,
    /// Factor on both list prices.
    pub price: f64,
}

/// One attempt's fate.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub duration_ms: i64,
    /// 0 when no first token arrived.
    pub ttft_ms: i64,
    pub ok: bool,
}

impl Attempt {
    /// Failed after output reached the client: no fallback can help.
    pub fn partial(&self) -> bool {
        !self.ok && self.ttft_ms > 0
    }
}

/// Independent uniforms for one attempt: the same (request, attempt, target)
/// draws the same numbers whichever router sent it.
#[derive(Debug, Clone, Copy)]
pub struct Noise(u64);

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Noise {
    pub fn new(seed: u64, request: usize, attempt: usize, target: usize) -> Self {
        let key = (request as u64) << 16 | (attempt as u64) << 8 | target as u64;
        Self(splitmix(splitmix(seed) ^ key))
    }

    /// The `k`-th uniform in [0, 1).
    pub fn uniform(self, k: u64) -> f64 {
        (splitmix(self.0 ^ splitmix(k)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The `k`-th standard normal (Box-Muller on uniforms 2k and 2k + 1).
    pub fn normal(self, k: u64) -> f64 {
        let u1 = 1.0 - self.uniform(2 * k);
        let u2 = self.uniform(2 * k + 1);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub struct Market {
    pub scenario: Scenario,
    /// Per target, oldest first; the first step is at the start of the warm-up.
    paths: Vec<Vec<Step>>,
}

impl Market {
    pub fn new(scenario: Scenario) -> Self {
        let end = scenario.duration_ms;
        let paths = PROFILES
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut rng =
                    StdRng::seed_from_u64(splitmix(scenario.seed ^ 0xD21F_7000 ^ i as u64));
                let mut step = Step {
                    at_ms: -scenario.warmup_ms,
                    latency: 1.0,
                    error_rate: p.error_rate,
                    price: 1.0,
                };
                let mut path = vec![step];
                loop {
                    let wait = DRIFT_EVERY_MS.0
                        + rng.random::<f64>() * (DRIFT_EVERY_MS.1 - DRIFT_EVERY_MS.0);
                    step.at_ms += wait as i64;
                    if step.at_ms >= end {
                        break path;
                    }
                    step.latency = (step.latency * (LATENCY_STEP * normal(&mut rng)).exp())
                        .clamp(LATENCY_BOUNDS.0, LATENCY_BOUNDS.1);
                    step.error_rate = (step.error_rate + ERROR_STEP * normal(&mut rng))
                        .clamp(ERROR_BOUNDS.0, ERROR_BOUNDS.1);
                    step.price = (step.price * (PRICE_STEP * normal(&mut rng)).exp())
                        .clamp(PRICE_BOUNDS.0, PRICE_BOUNDS.1);
                    path.push(step);
                }
            })
            .collect();
        Self { scenario, paths }
    }

    pub fn targets(&self) -> usize {
        PROFILES.len()
    }

    /// Request arrival times (virtual ms), Poisson, warm-up included.
    pub fn arrivals(&self) -> Vec<i64> {
        let s = &self.scenario;
        let mut rng = StdRng::seed_from_u64(splitmix(s.seed ^ 0xA11_1BA1));
        let mut t = -s.warmup_ms as f64;
        let mut arrivals = Vec::new();
        loop {
            t += -(1.0 - rng.random::<f64>()).ln() * 1000.0 / s.rate_per_s;
            if t >= s.duration_ms as f64 {
                return arrivals;
            }
            arrivals.push(t as i64);
        }
    }

    pub fn step(&self, target: usize, t: i64) -> Step {
        let path = &self.paths[target];
        let i = path.partition_point(|s| s.at_ms <= t).max(1);
        path[i - 1]
    }

    /// When a price changed anywhere (a registry write), in order.
    pub fn price_changes(&self) -> Vec<i64> {
        let mut at: Vec<i64> = self
            .paths
            .iter()
            .flat_map(|p| p.iter().skip(1).map(|s| s.at_ms))
            .collect();
        at.sort_unstable();
        at
    }

    /// Every moment the true state of some target changes.
    pub fn changes(&self) -> Vec<i64> {
        let mut at = self.price_changes();
        at.extend([self.scenario.outage.0, self.scenario.outage.1]);
        at.sort_unstable();
        at.dedup();
        at
    }

    pub fn in_outage(&self, target: usize, t: i64) -> bool {
        let (start, end) = self.scenario.outage;
        target == self.scenario.outage_target && (start..end).contains(&t)
    }

    pub fn error_rate(&self, target: usize, t: i64) -> f64 {
        if self.in_outage(target, t) {
            1.0
        } else {
            self.step(target, t).error_rate
        }
    }

    /// List prices (USD per million input and output tokens) at `t`.
    pub fn prices(&self, target: usize, t: i64) -> (f64, f64) {
        let p = &PROFILES[target];
        let f = self.step(target, t).price;
        (p.input_price * f, p.output_price * f)
    }

    /// What a request costs on `target` at `t`, in USD.
    pub fn cost_usd(&self, target: usize, t: i64) -> f64 {
        let (input, output) = self.prices(target, t);
        (INPUT_TOKENS as f64 * input + OUTPUT_TOKENS as f64 * output) / 1e6
    }

    pub fn mean_ttft_ms(&self, target: usize, t: i64) -> f64 {
        PROFILES[target].ttft_ms * self.step(target, t).latency
    }

    fn mean_generation_ms(&self, target: usize, t: i64) -> f64 {
        OUTPUT_TOKENS as f64 * 1000.0 / PROFILES[target].tokens_per_second
            * self.step(target, t).latency
    }

    /// Mean time to the whole answer.
    pub fn mean_latency_ms(&self, target: usize, t: i64) -> f64 {
        self.mean_ttft_ms(target, t) + self.mean_generation_ms(target, t)
    }

    /// The 5xx an attempt started at `start` meets, if it meets one.
    fn error(&self, target: usize, start: i64, noise: Noise) -> Option<Attempt> {
        let span = if self.in_outage(target, start) {
            OUTAGE_ERROR_MS
        } else if noise.uniform(0) < self.error_rate(target, start) {
            ERROR_MS
        } else {
            return None;
        };
        Some(Attempt {
            duration_ms: between(span, noise.uniform(1)),
            ttft_ms: 0,
            ok: false,
        })
    }

    fn sample_ttft_ms(&self, target: usize, start: i64, noise: Noise) -> i64 {
        (self.mean_ttft_ms(target, start) * lognormal(TTFT_SIGMA, noise.normal(1))).max(1.0) as i64
    }

    /// One attempt on `target` started at `start`.
    pub fn attempt(&self, target: usize, start: i64, noise: Noise) -> Attempt {
        if let Some(error) = self.error(target, start, noise) {
            return error;
        }
        let ttft = self.sample_ttft_ms(target, start, noise);
        let generation = (self.mean_generation_ms(target, start)
            * lognormal(GENERATION_SIGMA, noise.normal(2))) as i64;
        let duration = ttft + generation;
        // An outage that begins while the attempt runs cuts it off.
        let (outage, _) = self.scenario.outage;
        if target == self.scenario.outage_target && start < outage && outage < start + duration {
            let cut = outage - start + between((0.0, 50.0), noise.uniform(1));
            return Attempt {
                duration_ms: cut,
                ttft_ms: if cut > ttft { ttft } else { 0 },
                ok: false,
            };
        }
        Attempt {
            duration_ms: duration,
            ttft_ms: ttft,
            ok: true,
        }
    }

    /// An active probe (a one-token request) on `target` started at `start`.
    pub fn probe(&self, target: usize, start: i64, noise: Noise) -> Attempt {
        if let Some(error) = self.error(target, start, noise) {
            return error;
        }
        let ttft = self.sample_ttft_ms(target, start, noise);
        let token = self.mean_generation_ms(target, start) / OUTPUT_TOKENS as f64;
        Attempt {
            duration_ms: ttft + token as i64,
            ttft_ms: ttft,
            ok: true,
        }
    }
}

fn between((lo, hi): (f64, f64), u: f64) -> i64 {
    (lo + (hi - lo) * u) as i64
}

/// exp(σz − σ²/2): log-normal with mean 1.
fn lognormal(sigma: f64, z: f64) -> f64 {
    (sigma * z - sigma * sigma / 2.0).exp()
}

/// The utility: what the balanced strategy asks for (quality, speed and cost
/// weighed evenly), as one number per request, judged on what happened.
pub mod utility {
    use switchyard_domain::Tier;

    use super::{INPUT_TOKENS, OUTPUT_TOKENS};

    /// The scorer's references for this request: a mid-priced model
    /// (1 / 4 USD per million tokens in / out) and a mid-speed one (500 ms
    /// to first token, 100 tokens a second) score 0.5 on cost and speed.
    pub const REFERENCE_USD: f64 =
        (INPUT_TOKENS as f64 * 1.0 + OUTPUT_TOKENS as f64 * 4.0) / 1_000_000.0;
    pub const REFERENCE_MS: f64 = 500.0 + OUTPUT_TOKENS as f64 * 1000.0 / 100.0;
    /// Quality points lost per reference unit of price or of latency: the
    /// slope of the scorer's 1 / (1 + x) at the reference, the same for both.
    pub const MONEY_WEIGHT: f64 = 0.25;
    pub const TIME_WEIGHT: f64 = 0.25;
    /// A request that ends in an error: the answer a standard model would
    /// have given is lost, and the time waited with it.
    pub const FAILURE_PENALTY: f64 = 0.7;

    /// The scorer's quality of a tier (what an answer is worth).
    pub fn tier_value(tier: Tier) -> f64 {
        match tier {
            Tier::Economy => 0.45,
            Tier::Standard => 0.70,
            Tier::Frontier => 0.95,
        }
    }

    pub fn success(tier: Tier, cost_usd: f64, latency_ms: f64) -> f64 {
        tier_value(tier)
            - MONEY_WEIGHT * cost_usd / REFERENCE_USD
            - TIME_WEIGHT * latency_ms / REFERENCE_MS
    }

    pub fn failure(waited_ms: f64) -> f64 {
        -FAILURE_PENALTY - TIME_WEIGHT * waited_ms / REFERENCE_MS
    }
}

impl Market {
    /// Expected utility of sending a request to `target` at `t`, from the
    /// true state: success at the mean latency, or an error after the mean
    /// time an error takes.
    pub fn expected_utility(&self, target: usize, t: i64) -> f64 {
        let e = self.error_rate(target, t);
        let fail_ms = if self.in_outage(target, t) {
            (OUTAGE_ERROR_MS.0 + OUTAGE_ERROR_MS.1) / 2.0
        } else {
            (ERROR_MS.0 + ERROR_MS.1) / 2.0
        };
        let ok = utility::success(
            PROFILES[target].tier,
            self.cost_usd(target, t),
            self.mean_latency_ms(target, t),
        );
        (1.0 - e) * ok + e * utility::failure(fail_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_market() {
        let a = Market::new(Scenario::new(7));
        let b = Market::new(Scenario::new(7));
        assert_eq!(a.arrivals(), b.arrivals());
        for t in 0..a.targets() {
            assert_eq!(a.paths[t].len(), b.paths[t].len());
            let n = Noise::new(7, 10, 0, t);
            assert_eq!(
                a.attempt(t, 1_000, n).duration_ms,
                b.attempt(t, 1_000, n).duration_ms
            );
        }
        let c = Market::new(Scenario::new(8));
        assert_ne!(a.arrivals(), c.arrivals());
    }

    #[test]
    fn drift_stays_within_bounds_and_the_outage_fails_everything() {
        let m = Market::new(Scenario::new(1));
        for path in &m.paths {
            for s in path {
                assert!((LATENCY_BOUNDS.0..=LATENCY_BOUNDS.1).contains(&s.latency));
                assert!((ERROR_BOUNDS.0..=ERROR_BOUNDS.1).contains(&s.error_rate));
                assert!((PRICE_BOUNDS.0..=PRICE_BOUNDS.1).contains(&s.price));
            }
        }
        let (start, end) = m.scenario.outage;
        for r in 0..200 {
            let a = m.attempt(0, start + 10 * r, Noise::new(1, r as usize, 0, 0));
            assert!(!a.ok);
        }
        // Attempts under way when it starts are cut off; after it, back to normal.
        let cut = m.attempt(0, start - 500, Noise::new(1, 3, 0, 0));
        assert!(!cut.ok && cut.duration_ms >= 500);
        let ok = (0..200)
            .filter(|&r| {
                m.attempt(0, end + 10 * r, Noise::new(1, r as usize, 0, 0))
                    .ok
            })
            .count();
        assert!(ok > 180, "{ok}");
    }

    #[test]
    fn at_the_start_the_cheap_fast_target_is_worth_most_and_the_frontier_one_least() {
        let m = Market::new(Scenario::new(1));
        let t = -m.scenario.warmup_ms;
        let u: Vec<f64> = (0..5).map(|i| m.expected_utility(i, t)).collect();
        assert!(u[0] > u[1] && u[1] > u[2].max(u[3]) && u[4] < 0.0, "{u:?}");
    }

    #[test]
    fn poisson_arrivals_at_the_rate_asked() {
        let m = Market::new(Scenario::new(3));
        let n = m.arrivals().len() as f64;
        let expected = 50.0 * 360.0;
        assert!((n - expected).abs() < 4.0 * expected.sqrt(), "{n}");
    }
}
