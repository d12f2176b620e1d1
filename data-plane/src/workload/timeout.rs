//! Timeout profiles: how long one request may take end to end, named after the
//! kind of work (`fast` 5 s, `standard` 30 s, `deep` 120 s) or given exactly.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::WorkloadError;

/// Shortest custom timeout a client may ask for.
pub const MIN_CUSTOM_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest custom timeout a client may ask for.
pub const MAX_CUSTOM_TIMEOUT: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutProfile {
    /// 5 s: autocomplete and quick edits, where a late answer is a useless one.
    Fast,
    /// 30 s: ordinary chat and coding.
    Standard,
    /// 120 s: long inputs and explicit reasoning.
    Deep,
    /// A duration the client chose, within 100 ms ..= 10 min.
    Custom(Duration),
}

impl TimeoutProfile {
    pub fn duration(&self) -> Duration {
        match self {
            Self::Fast => Duration::from_secs(5),
            Self::Standard => Duration::from_secs(30),
            Self::Deep => Duration::from_secs(120),
            Self::Custom(d) => *d,
        }
    }

    /// The profile's name for traces and metrics; every custom duration is `custom`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Standard => "standard",
            Self::Deep => "deep",
            Self::Custom(_) => "custom",
        }
    }

    /// A custom profile, if `duration` is within the allowed range.
    pub fn custom(duration: Duration) -> Result<Self, WorkloadError> {
        if (MIN_CUSTOM_TIMEOUT..=MAX_CUSTOM_TIMEOUT).contains(&duration) {
            Ok(Self::Custom(duration))
        } else {
            Err(WorkloadError::TimeoutOutOfRange {
                given: humantime::format_duration(duration).to_string(),
            })
        }
    }
}

/// Named profiles print their name; a custom one prints its duration (`45s`),
/// so the printed form parses back to the same profile.
impl fmt::Display for TimeoutProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Custom(d) => write!(f, "{}", humantime::format_duration(*d)),
            named => f.write_str(named.as_str()),
        }
    }
}

impl FromStr for TimeoutProfile {
    type Err = WorkloadError;

    /// `fast`, `standard`, `deep` (any case), or a duration such as `45s`,
    /// `1m 30s` or `500ms` between 100 ms and 10 minutes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let given = s.trim();
        for named in [Self::Fast, Self::Standard, Self::Deep] {
            if given.eq_ignore_ascii_case(named.as_str()) {
                return Ok(named);
            }
        }
        let duration = humantime::parse_duration(given).map_err(|_| WorkloadError::Timeout {
            given: super::shorten(given),
        })?;
        Self::custom(duration).map_err(|_| WorkloadError::TimeoutOutOfRange {
            given: super::shorten(given),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_profiles_have_their_durations() {
        let cases = [
            (TimeoutProfile::Fast, 5, "fast"),
            (TimeoutProfile::Standard, 30, "standard"),
            (TimeoutProfile::Deep, 120, "deep"),
            (
                TimeoutProfile::Custom(Duration::from_secs(45)),
                45,
                "custom",
            ),
        ];
        for (profile, secs, name) in cases {
            assert_eq!(profile.duration(), Duration::from_secs(secs), "{profile:?}");
            assert_eq!(profile.as_str(), name);
        }
    }

    #[test]
    fn parsing_accepts_names_and_durations() {
        let cases = [
            ("fast", TimeoutProfile::Fast),
            ("standard", TimeoutProfile::Standard),
            ("deep", TimeoutProfile::Deep),
            (" Deep ", TimeoutProfile::Deep),
            ("45s", TimeoutProfile::Custom(Duration::from_secs(45))),
            ("100ms", TimeoutProfile::Custom(Duration::from_millis(100))),
            ("1m 30s", TimeoutProfile::Custom(Duration::from_secs(90))),
            ("10m", TimeoutProfile::Custom(Duration::from_secs(600))),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<TimeoutProfile>().unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn parsing_rejects_bad_input_with_a_clear_message() {
        let cases = [
            ("0s", "out of range", "between 100ms and 10m"),
            ("99ms", "out of range", "between 100ms and 10m"),
            ("11m", "out of range", "between 100ms and 10m"),
            ("soon", "\"soon\"", "fast, standard, deep"),
            ("", "\"\"", "a duration such as \"45s\""),
            ("-5s", "\"-5s\"", "a duration such as \"45s\""),
        ];
        for (text, names, explains) in cases {
            let message = text.parse::<TimeoutProfile>().unwrap_err().to_string();
            assert!(message.contains(names), "{text}: {message}");
            assert!(message.contains(explains), "{text}: {message}");
        }
        assert_eq!(
            "0s".parse::<TimeoutProfile>().unwrap_err().to_string(),
            "timeout \"0s\" is out of range: a custom timeout must be between 100ms and 10m"
        );
        assert_eq!(
            "soon".parse::<TimeoutProfile>().unwrap_err().to_string(),
            "invalid timeout \"soon\": expected fast, standard, deep or a duration such as \"45s\""
        );
    }

    #[test]
    fn display_parses_back() {
        for profile in [
            TimeoutProfile::Fast,
            TimeoutProfile::Standard,
            TimeoutProfile::Deep,
            TimeoutProfile::Custom(Duration::from_millis(1_500)),
            TimeoutProfile::Custom(Duration::from_secs(45)),
        ] {
            assert_eq!(
                profile.to_string().parse::<TimeoutProfile>().unwrap(),
                profile
            );
        }
        assert_eq!(
            TimeoutProfile::Custom(Duration::from_secs(45)).to_string(),
            "45s"
        );
    }

    #[test]
    fn custom_checks_the_range() {
        assert!(TimeoutProfile::custom(Duration::from_millis(100)).is_ok());
        assert!(TimeoutProfile::custom(Duration::from_secs(600)).is_ok());
        assert!(TimeoutProfile::custom(Duration::from_millis(99)).is_err());
        assert!(TimeoutProfile::custom(Duration::from_secs(601)).is_err());
    }
}
