//! The response headers clients of OpenAI's API read: `x-ratelimit-*` for
//! requests and tokens on every response, `retry-after` (whole seconds,
//! rounded up) and `retry-after-ms` (which OpenAI's SDKs prefer) on a denial.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::decision::{Decision, Quota};

pub const LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
pub const REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
pub const RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
pub const LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
pub const REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
pub const RESET_TOKENS: &str = "x-ratelimit-reset-tokens";
pub const RETRY_AFTER: &str = "retry-after";
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

impl Decision {
    /// The headers for this decision, names in lower case.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(8);
        let dimensions = [
            (
                self.requests,
                [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
            ),
            (self.tokens, [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS]),
        ];
        for (quota, [limit, remaining, reset]) in dimensions {
            if let Some(Quota {
                limit: l,
                remaining: r,
                reset: t,
            }) = quota
            {
                headers.push((limit, l.to_string()));
                headers.push((remaining, r.to_string()));
                headers.push((reset, reset_string(t)));
            }
        }
        if let Some(wait) = self.retry_after() {
            let ms = wait.as_micros().div_ceil(1000).max(1);
            headers.push((RETRY_AFTER, ms.div_ceil(1000).to_string()));
            headers.push((RETRY_AFTER_MS, ms.to_string()));
        }
        headers
    }

    /// Appends [`Decision::headers`] to a response's headers.
    pub fn append_headers(&self, map: &mut HeaderMap) {
        for (name, value) in self.headers() {
            // Digits and unit letters only: always a valid value.
            if let Ok(value) = HeaderValue::try_from(value) {
                map.append(HeaderName::from_static(name), value);
            }
        }
    }
}

/// A duration as OpenAI writes its reset headers (`20ms`, `1s`, `9.126s`,
/// `6m0s`), rounded up to the millisecond.
pub fn reset_string(duration: Duration) -> String {
    let ms = duration.as_micros().div_ceil(1000);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, ms) = (ms / 60_000, ms % 60_000);
    let seconds = if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_owned()
    };
    if minutes == 0 {
        format!("{seconds}s")
    } else {
        format!("{minutes}m{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::decision::{Cause, Denial, Mode};
    use crate::limits::scope::{Dimension, ScopeKind};

    #[test]
    fn resets_read_like_openai_s() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_micros(1), "1ms"),
            (Duration::from_millis(20), "20ms"),
            (Duration::from_millis(999), "999ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(9_126), "9.126s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(90_250), "1m30.25s"),
        ] {
            assert_eq!(reset_string(duration), text);
        }
    }

    #[test]
    fn a_denial_carries_quotas_and_retry_after_rounded_up() {
        let decision = Decision {
            denial: Some(Denial {
                cause: Cause::Limit {
                    scope: ScopeKind::Workspace,
                    dimension: Dimension::Requests,
                },
                retry_after: Duration::from_millis(1_200),
            }),
            requests: Some(Quota {
                limit: 60,
                remaining: 0,
                reset: Duration::from_secs(60),
            }),
            tokens: None,
            mode: Mode::Redis,
        };
        assert_eq!(
            decision.headers(),
            [
                (LIMIT_REQUESTS, "60".to_owned()),
                (REMAINING_REQUESTS, "0".to_owned()),
                (RESET_REQUESTS, "1m0s".to_owned()),
                (RETRY_AFTER, "2".to_owned()),
                (RETRY_AFTER_MS, "1200".to_owned()),
            ]
        );
        let mut map = HeaderMap::new();
        decision.append_headers(&mut map);
        assert_eq!(map.len(), 5);
        assert_eq!(map["retry-after"], "2");
        // An allowed request gets no retry-after.
        let allowed = Decision {
            denial: None,
            ..decision
        };
        assert!(
            allowed
                .headers()
                .iter()
                .all(|(n, _)| !n.starts_with("retry"))
        );
    }
}
