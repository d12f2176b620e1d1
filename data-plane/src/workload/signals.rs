//! The textual signals the intent classifier reads: whether text holds code
//! (fenced blocks, code-like lines, inline spans), whether it stops mid-line,
//! fill-in-the-middle markers, and whole words or phrases. All checks are plain
//! string scans, linear in the text, with no regular expressions.

/// Markers of fill-in-the-middle prompts used by code models.
const FIM_MARKERS: &[&str] = &[
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "[SUFFIX]",
    "<SUF>",
];

/// Line starts that mark code on their own.
const CODE_STARTS: &[&str] = &[
    "fn ",
    "pub fn ",
    "pub(crate) ",
    "async fn ",
    "def ",
    "async def ",
    "impl ",
    "impl<",
    "func ",
    "elif ",
    "#include",
    "#define",
    "#!/",
    "<?php",
];

/// Line starts that mark code when the line also has code punctuation
/// (`(`, `=`, `[`, `{`, `:`), so that prose such as "if I have three apples"
/// is not taken for code.
const CODE_KEYWORDS: &[&str] = &[
    "class ",
    "import ",
    "from ",
    "function ",
    "struct ",
    "enum ",
    "interface ",
    "return ",
    "const ",
    "let ",
    "var ",
    "public ",
    "private ",
    "static ",
    "if ",
    "for ",
    "while ",
    "else",
    "try",
    "except",
    "catch",
    "switch ",
    "SELECT ",
];

/// Operators that hardly appear in prose.
const CODE_OPERATORS: &[&str] = &["=>", "->", "::", "==", "!=", "&&", "||", "();"];

/// Characters a line of code may end with when it is complete; code ending in
/// anything else (an operator, an open bracket, half a name) is cut mid-line.
const COMPLETE_LINE_ENDS: &[char] = &[
    ';', '{', '}', ')', ']', ':', '.', '?', '!', '"', '\'', '`', '>', ',',
];

/// How a piece of text looks to the classifier.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TextShape {
    /// A fenced code block (a line starting with three backticks or tildes).
    pub fenced: bool,
    /// Non-blank lines outside fences that look like code.
    pub code_lines: usize,
    /// Non-blank lines outside fences that do not.
    pub prose_lines: usize,
    /// An inline code span in backticks.
    pub inline_code: bool,
    /// The text is mostly code and its last line stops mid-statement.
    pub partial_last_line: bool,
    /// A fill-in-the-middle marker found in the text.
    pub fim_marker: Option<&'static str>,
}

impl TextShape {
    /// Code by lines: two or more code-like lines, or at least as many as prose lines.
    pub fn code_by_lines(&self) -> bool {
        self.code_lines >= 2 || (self.code_lines >= 1 && self.code_lines >= self.prose_lines)
    }
}

pub(crate) fn shape(text: &str) -> TextShape {
    let mut shape = TextShape::default();
    let mut in_fence = false;
    let mut last_line = "";
    let mut last_is_code = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            shape.fenced = true;
            in_fence = !in_fence;
            continue;
        }
        if in_fence || trimmed.is_empty() {
            continue;
        }
        last_line = line;
        last_is_code = is_code_line(line);
        if last_is_code {
            shape.code_lines += 1;
        } else {
            shape.prose_lines += 1;
            shape.inline_code |= has_inline_code(trimmed);
        }
    }
    // A last line cut mid-statement rarely looks like code by itself: judge
    // the text by the lines before it.
    let prose_before = shape.prose_lines.saturating_sub(usize::from(!last_is_code));
    let ends_mid_line = !text.ends_with(char::is_whitespace)
        && !last_line.trim().is_empty()
        && !last_line.trim_end().ends_with(COMPLETE_LINE_ENDS);
    shape.partial_last_line = !shape.fenced && ends_mid_line && shape.code_lines > prose_before;
    if text.contains(['<', '[']) {
        shape.fim_marker = FIM_MARKERS.iter().copied().find(|m| text.contains(m));
    }
    shape
}

/// Whether one line looks like code: a code-only start (`fn `, `def `, …), a
/// keyword start with code punctuation, an assignment, a line ending in `;`,
/// `{` or `}`, or an operator prose does not use.
pub(crate) fn is_code_line(line: &str) -> bool {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return false;
    }
    if CODE_STARTS.iter().any(|s| trimmed.starts_with(s)) {
        return true;
    }
    if trimmed.ends_with([';', '{', '}']) || trimmed == ")" || trimmed == "])" {
        return true;
    }
    if CODE_OPERATORS.iter().any(|op| trimmed.contains(op)) {
        return true;
    }
    let punctuated = trimmed.contains(['(', '=', '[', '{', ':']);
    if punctuated && CODE_KEYWORDS.iter().any(|k| trimmed.starts_with(k)) {
        return true;
    }
    is_assignment(trimmed)
}

/// `name = value` or `obj.field += value`: an identifier path, then an
/// assignment operator (not `==`).
fn is_assignment(line: &str) -> bool {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let rest = line[name_end..].trim_start();
    let rest = rest.trim_start_matches(['+', '-', '*', '/', '|', '&', ':']);
    rest.starts_with('=') && !rest.starts_with("==")
}

/// A span between two backticks on one line, with no space just inside.
fn has_inline_code(line: &str) -> bool {
    let mut spans = line.split('`');
    spans.next();
    let mut open = spans.next();
    while let Some(inner) = open {
        if spans.next().is_none() {
            return false;
        }
        if !inner.is_empty() && !inner.starts_with(' ') && !inner.ends_with(' ') {
            return true;
        }
        open = spans.next();
    }
    false
}

/// The lines of `text` a person wrote in words: outside fences, not code-like,
/// with inline code spans left out.
pub(crate) fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || trimmed.is_empty() || is_code_line(line) {
            continue;
        }
        for (i, span) in trimmed.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(span);
                out.push(' ');
            }
        }
        out.push('\n');
    }
    out
}

/// The first of `phrases` (lowercase words separated by single spaces) that
/// occurs in `text` as whole words, ignoring case and punctuation between
/// words ("Step-by-step" matches "step by step").
pub(crate) fn find_phrase(text: &str, phrases: &[&'static str]) -> Option<&'static str> {
    const WINDOW: usize = 4;
    // Each phrase's last word and word count, split once per call: most words
    // of the text end no phrase and are rejected on the last word alone.
    let ends: Vec<(&str, usize, &'static str)> = phrases
        .iter()
        .map(|&phrase| {
            let last = phrase.rsplit(' ').next().unwrap_or(phrase);
            (last, phrase.split(' ').count(), phrase)
        })
        .filter(|&(_, n, _)| n <= WINDOW)
        .collect();
    let mut recent: [&str; WINDOW] = [""; WINDOW];
    let mut seen = 0usize;
    let words = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty());
    for word in words {
        recent.rotate_left(1);
        recent[WINDOW - 1] = word;
        seen = seen.saturating_add(1);
        for &(last, n, phrase) in &ends {
            if n > seen || word.len() != last.len() || !word.eq_ignore_ascii_case(last) {
                continue;
            }
            let matches = phrase
                .split(' ')
                .zip(&recent[WINDOW - n..])
                .all(|(want, got)| got.eq_ignore_ascii_case(want));
            if matches {
                return Some(phrase);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lines_are_told_from_prose() {
        let code = [
            "fn main() {",
            "def fib(n):",
            "    return fib(n - 1) + fib(n - 2)",
            "x = foo(",
            "self.count += 1",
            "}",
            "let total = items.len();",
            "for i in range(10):",
            "if (ready) {",
            "match x { Some(v) => v, None => 0 }",
            "import { useState } from 'react'",
            "#include <stdio.h>",
        ];
        for line in code {
            assert!(is_code_line(line), "{line:?} should be code");
        }
        let prose = [
            "if I have three apples and eat two, how many are left?",
            "Here is my code:",
            "Please rename the variable.",
            "class starts at nine",
            "for what it's worth, thanks",
            "The answer is 42.",
            "",
        ];
        for line in prose {
            assert!(!is_code_line(line), "{line:?} should be prose");
        }
    }

    #[test]
    fn shapes_of_typical_messages() {
        let fenced = shape("Why does this fail?\n```rust\nlet x: u8 = 300;\n```\n");
        assert!(fenced.fenced);
        assert_eq!(fenced.prose_lines, 1);
        assert_eq!(fenced.code_lines, 0, "fenced lines are not counted");
        assert!(!fenced.partial_last_line);

        let partial = shape("def add(a, b):\n    return a +");
        assert!(partial.partial_last_line, "{partial:?}");

        let complete = shape("def add(a, b):\n    return a + b\n");
        assert!(!complete.partial_last_line);

        let question = shape("What does this do?\nx = foo(");
        assert!(
            !question.partial_last_line,
            "prose as long as code: {question:?}"
        );
        assert!(question.code_by_lines());

        let inline = shape("rename `get_user` to `fetch_user`");
        assert!(inline.inline_code);
        assert!(!inline.code_by_lines());

        let chat = shape("Tell me a joke about routers");
        assert_eq!(
            chat,
            TextShape {
                prose_lines: 1,
                ..TextShape::default()
            }
        );

        let fim = shape("<|fim_prefix|>def f(x):\n<|fim_suffix|>\n<|fim_middle|>");
        assert_eq!(fim.fim_marker, Some("<|fim_prefix|>"));
    }

    #[test]
    fn inline_code_needs_a_closed_span() {
        assert!(has_inline_code("use `foo()` here"));
        assert!(!has_inline_code("a lone ` backtick"));
        assert!(!has_inline_code("spaced ` out ` ticks"));
        assert!(!has_inline_code("no ticks at all"));
    }

    #[test]
    fn prose_drops_code_and_inline_spans() {
        let text = "Please fix `a.add(b)` here\n```\nset.add(x);\n```\nlet y = z.add(1);\nthanks";
        let words = prose(text);
        assert!(words.contains("Please fix"));
        assert!(words.contains("thanks"));
        assert!(!words.contains("add"), "{words:?}");
    }

    #[test]
    fn phrases_match_whole_words_in_any_case() {
        let phrases = &["prove", "step by step", "think carefully"];
        let cases = [
            ("Prove that sqrt(2) is irrational", Some("prove")),
            ("Explain it Step-by-step, please", Some("step by step")),
            ("Let's THINK   carefully.", Some("think carefully")),
            ("Can you improve this text?", None),
            ("step by", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(find_phrase(text, phrases), expected, "{text:?}");
        }
    }
}
