//! What the processes' JSON logs said: lines at each level over several
//! files (every life of every replica), and each warning or error message
//! with how often it came, so anything the failovers made them complain
//! about shows up in the report.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// Warning and error messages listed.
const MESSAGES: usize = 8;

#[derive(Debug, Default, PartialEq)]
pub struct Logs {
    pub lines: usize,
    pub by_level: BTreeMap<String, usize>,
    /// `LEVEL message` of warnings and errors, most frequent first.
    pub complaints: Vec<(String, usize)>,
}

/// Reads every file in `paths` (each one JSON lines).
pub fn read(paths: &[impl AsRef<Path>]) -> anyhow::Result<Logs> {
    let mut text = String::new();
    for path in paths {
        let path = path.as_ref();
        text.push_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        );
        text.push('\n');
    }
    Ok(summarize(&text))
}

fn summarize(text: &str) -> Logs {
    let mut logs = Logs::default();
    let mut complaints: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        logs.lines += 1;
        let parsed = serde_json::from_str::<Value>(line).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let level = field("level").unwrap_or_else(|| "UNPARSED".to_owned());
        if level != "INFO" && level != "DEBUG" && level != "TRACE" {
            let message = field("message").unwrap_or_else(|| line.chars().take(100).collect());
            *complaints.entry(format!("{level} {message}")).or_default() += 1;
        }
        *logs.by_level.entry(level).or_default() += 1;
    }
    let mut complaints: Vec<(String, usize)> = complaints.into_iter().collect();
    complaints.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    complaints.truncate(MESSAGES);
    logs.complaints = complaints;
    logs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_levels_and_lists_complaints_only() {
        let log = concat!(
            r#"{"level":"INFO","message":"leading","epoch":7}"#,
            "\n",
            r#"{"level":"WARN","message":"stepped down","epoch":7}"#,
            "\n",
            r#"{"level":"WARN","message":"stepped down","epoch":9}"#,
            "\nplain text line\n",
        );
        let logs = summarize(log);
        assert_eq!(logs.lines, 4);
        assert_eq!(logs.by_level.get("INFO"), Some(&1));
        assert_eq!(
            logs.complaints,
            vec![
                ("WARN stepped down".to_owned(), 2),
                ("UNPARSED plain text line".to_owned(), 1)
            ]
        );
    }
}
