//! Reads the profiles callgrind writes (`--callgrind`): the instructions
//! each function executed itself (exclusive) and with everything it called
//! (inclusive), summed over the function's name.
//!
//! The format is callgrind's own: `fn=` starts a function's cost lines,
//! `cfn=` and `calls=` announce a call whose inclusive cost is on the next
//! cost line, and names are compressed as `(id) name` on first use and `(id)`
//! after. Only the first event (`Ir`) is read. `callgrind_annotate` reads the
//! same files; its exclusive listing puts nearly everything on the thread
//! roots for profiles that were zeroed while threads were running, which is
//! why the summary is computed here.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;

/// Instructions per function in one profile.
#[derive(Debug, Default, PartialEq)]
pub struct Profile {
    /// Every instruction counted.
    pub total: u64,
    /// Executed in the function itself, by name, most first.
    pub exclusive: Vec<(String, u64)>,
    /// In the function and everything it called, by name, most first.
    /// Calls of a function to itself are not counted twice.
    pub inclusive: Vec<(String, u64)>,
}

pub fn read(path: &Path) -> anyhow::Result<Profile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse(&text))
}

pub fn parse(text: &str) -> Profile {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut exclusive: HashMap<String, u64> = HashMap::new();
    let mut inclusive: HashMap<String, u64> = HashMap::new();
    let mut function = String::new();
    let mut callee = String::new();
    let mut in_call = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("fn=") {
            function = name(&mut names, rest);
        } else if let Some(rest) = line.strip_prefix("cfn=") {
            callee = name(&mut names, rest);
        } else if line.starts_with("calls=") {
            in_call = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '*')) {
            let cost: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if in_call {
                in_call = false;
                if callee != function {
                    *inclusive.entry(function.clone()).or_default() += cost;
                }
            } else {
                *exclusive.entry(function.clone()).or_default() += cost;
                *inclusive.entry(function.clone()).or_default() += cost;
            }
        }
    }
    Profile {
        total: exclusive.values().sum(),
        exclusive: most_first(exclusive),
        inclusive: most_first(inclusive),
    }
}

/// Resolves `(id) name` (and remembers it) or `(id)`; anything else is the
/// name itself.
fn name(names: &mut HashMap<String, String>, field: &str) -> String {
    let Some(rest) = field.strip_prefix('(') else {
        return field.to_owned();
    };
    let Some((id, after)) = rest.split_once(')') else {
        return field.to_owned();
    };
    match after.strip_prefix(' ') {
        Some(name) => {
            names.insert(id.to_owned(), name.to_owned());
            name.to_owned()
        }
        None => names.get(id).cloned().unwrap_or_else(|| format!("({id})")),
    }
}

fn most_first(costs: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut costs: Vec<(String, u64)> = costs.into_iter().filter(|(_, c)| *c > 0).collect();
    costs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    costs
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "\
# callgrind format
version: 1
events: Ir
summary: 185

fn=(1) main
10 5
cfn=(2) handle
calls=2 20
11 150
+1 5
fn=(2)
20 100
cfn=(3) memcpy
calls=1 0
21 40
cfn=(2)
calls=1 20
22 60
fn=(3)
0 25
";

    #[test]
    fn exclusive_and_inclusive_per_function() {
        let p = parse(PROFILE);
        assert_eq!(p.total, 5 + 5 + 100 + 25);
        assert_eq!(
            p.exclusive,
            vec![
                ("handle".to_owned(), 100),
                ("memcpy".to_owned(), 25),
                ("main".to_owned(), 10),
            ]
        );
        // main: its own 10 and the call to handle (150); handle: its own 100
        // and memcpy (40), not its call to itself.
        assert_eq!(
            p.inclusive,
            vec![
                ("main".to_owned(), 160),
                ("handle".to_owned(), 140),
                ("memcpy".to_owned(), 25),
            ]
        );
    }
}
