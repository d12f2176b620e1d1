//! Writes a benchmark's results into bench/README.md between its own pair of
//! markers, adding the section (title and markers) at the end of the file the
//! first time.

use std::path::Path;

use anyhow::{Context as _, bail};

/// Where one benchmark's results live in the README.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// The heading put above the markers when the section is added.
    pub title: &'static str,
    pub start: &'static str,
    pub end: &'static str,
}

/// Prints a benchmark's report and, with `write_to`, puts it into that
/// README as well.
pub fn publish(markdown: &str, write_to: Option<&Path>, section: &Section) -> anyhow::Result<()> {
    println!("{markdown}");
    if let Some(path) = write_to {
        write(path, section, markdown)?;
        eprintln!("updated {}", path.display());
    }
    Ok(())
}

/// Puts `body` between the section's markers in the file at `path`.
pub fn write(path: &Path, section: &Section, body: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let updated = replace(&text, section, body).with_context(|| {
        format!(
            "updating the {:?} results in {}",
            section.title,
            path.display()
        )
    })?;
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

fn replace(text: &str, section: &Section, body: &str) -> anyhow::Result<String> {
    let Section { title, start, end } = *section;
    let Some(at) = text.find(start) else {
        if text.contains(end) {
            bail!("{end} without {start}");
        }
        return Ok(format!(
            "{}\n\n{title}\n\n{start}\n\n{}\n{end}\n",
            text.trim_end(),
            body.trim_end()
        ));
    };
    let body_start = at + start.len();
    let Some(body_end) = text[body_start..].find(end).map(|i| body_start + i) else {
        bail!("no {end} line after {start}");
    };
    Ok(format!(
        "{}\n\n{}\n{}",
        &text[..body_start],
        body.trim_end(),
        &text[body_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION: Section = Section {
        title: "## T",
        start: "<!-- t:start -->",
        end: "<!-- t:end -->",
    };

    #[test]
    fn replaces_only_the_marked_section_and_adds_it_when_missing() {
        let (start, end) = (SECTION.start, SECTION.end);
        let text = format!("# B\n\nintro\n\n{start}\nold\n{end}\n\nafter\n");
        let updated = replace(&text, &SECTION, "new table\n").unwrap();
        assert_eq!(
            updated,
            format!("# B\n\nintro\n\n{start}\n\nnew table\n{end}\n\nafter\n")
        );
        assert_eq!(replace(&updated, &SECTION, "new table\n").unwrap(), updated);

        let added = replace("# B\n\nintro\n", &SECTION, "table\n").unwrap();
        assert_eq!(
            added,
            format!("# B\n\nintro\n\n## T\n\n{start}\n\ntable\n{end}\n")
        );
        assert_eq!(replace(&added, &SECTION, "table\n").unwrap(), added);
    }

    #[test]
    fn a_broken_pair_of_markers_is_an_error() {
        assert!(replace(SECTION.end, &SECTION, "x").is_err());
        assert!(replace(SECTION.start, &SECTION, "x").is_err());
    }
}
