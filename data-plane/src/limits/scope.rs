//! What is limited: scopes (an API key, a workspace), the two dimensions
//! (requests, tokens) and their rates.

use std::fmt;

/// Who a limit applies to. A key is named by its id, never by the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    Key(&'a str),
    Workspace(&'a str),
}

impl Scope<'_> {
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Key(_) => ScopeKind::Key,
            Scope::Workspace(_) => ScopeKind::Workspace,
        }
    }

    pub(crate) fn id(&self) -> &str {
        match self {
            Scope::Key(id) | Scope::Workspace(id) => id,
        }
    }
}

/// A scope without its id: what logs, metrics and error messages may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Key,
    Workspace,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::Workspace => "workspace",
        }
    }
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Requests,
    Tokens,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
        }
    }

    /// The short tag in storage keys.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Dimension::Requests => "r",
            Dimension::Tokens => "t",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rate: `per_minute` units earned back evenly over each minute, and at
/// most `burst` units spent at once (the bucket's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// 0 admits nothing.
    pub per_minute: u32,
    /// 0 admits nothing.
    pub burst: u32,
}

impl Rate {
    /// A minute's worth may be spent at once, as OpenAI-style limits allow.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            per_minute,
            burst: per_minute,
        }
    }

    pub fn with_burst(self, burst: u32) -> Self {
        Self { burst, ..self }
    }

    /// Time to earn back one unit, in microseconds; `None` for a rate that
    /// admits nothing.
    pub(crate) fn interval_us(&self) -> Option<f64> {
        (self.per_minute > 0 && self.burst > 0).then(|| 60e6 / f64::from(self.per_minute))
    }
}

/// The limits of one scope; `None` leaves that dimension unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
}

impl Limit {
    /// Requests and tokens per minute, each with a burst of one minute's worth.
    pub fn per_minute(requests: Option<u32>, tokens: Option<u32>) -> Self {
        Self {
            requests: requests.map(Rate::per_minute),
            tokens: tokens.map(Rate::per_minute),
        }
    }

    pub(crate) fn rate(&self, dimension: Dimension) -> Option<Rate> {
        match dimension {
            Dimension::Requests => self.requests,
            Dimension::Tokens => self.tokens,
        }
    }
}
