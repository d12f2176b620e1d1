//! A summary of the gateway's JSON log: how many lines at each level and the
//! most frequent messages, so anything it complained about under load shows
//! up in the report.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// Distinct messages listed in the summary.
const TOP_MESSAGES: usize = 5;
/// Distinct warnings and errors listed.
const TOP_COMPLAINTS: usize = 8;

#[derive(Debug, Default, PartialEq)]
pub struct LogSummary {
    pub lines: usize,
    pub by_level: BTreeMap<String, usize>,
    /// The most frequent `LEVEL message` pairs, most frequent first.
    pub top: Vec<(String, usize)>,
    /// The same for warnings, errors and unparsed lines only.
    pub complaints: Vec<(String, usize)>,
}

/// One summary of several logs (e.g. every life of every replica).
pub fn summarize_files(paths: &[impl AsRef<Path>]) -> anyhow::Result<LogSummary> {
    let mut text = String::new();
    for path in paths {
        let path = path.as_ref();
        text.push_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        );
        text.push('\n');
    }
    Ok(summarize_text(&text))
}

/// The `n` most frequent entries, most frequent first.
fn most_frequent(counts: BTreeMap<String, usize>, n: usize) -> Vec<(String, usize)> {
    let mut sorted: Vec<(String, usize)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(n);
    sorted
}

fn summarize_text(text: &str) -> LogSummary {
    let mut summary = LogSummary::default();
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    let mut complaints: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        summary.lines += 1;
        let parsed = serde_json::from_str::<Value>(line).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let level = field("level").unwrap_or_else(|| "UNPARSED".to_owned());
        let message = field("message").unwrap_or_else(|| line.chars().take(100).collect());
        let entry = format!("{level} {message}");
        if !matches!(level.as_str(), "INFO" | "DEBUG" | "TRACE") {
            *complaints.entry(entry.clone()).or_default() += 1;
        }
        *summary.by_level.entry(level).or_default() += 1;
        *messages.entry(entry).or_default() += 1;
    }
    summary.top = most_frequent(messages, TOP_MESSAGES);
    summary.complaints = most_frequent(complaints, TOP_COMPLAINTS);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_levels_and_messages() {
        let log = concat!(
            r#"{"timestamp":"t","level":"WARN","message":"trace dropped: report queue full","trace_id":"a"}"#,
            "\n",
            r#"{"timestamp":"t","level":"WARN","message":"trace dropped: report queue full","trace_id":"b"}"#,
            "\n",
            r#"{"timestamp":"t","level":"ERROR","message":"boom"}"#,
            "\nplain text line\n\n",
        );
        let summary = summarize_text(log);
        assert_eq!(summary.lines, 4);
        assert_eq!(summary.by_level.get("WARN"), Some(&2));
        assert_eq!(summary.by_level.get("UNPARSED"), Some(&1));
        assert_eq!(
            summary.top.first(),
            Some(&("WARN trace dropped: report queue full".to_owned(), 2))
        );
        assert_eq!(
            summary.complaints,
            vec![
                ("WARN trace dropped: report queue full".to_owned(), 2),
                ("ERROR boom".to_owned(), 1),
                ("UNPARSED plain text line".to_owned(), 1)
            ]
        );
    }
}
