//! Errors in policy and expectations files, located at `file:line:column` with a hint.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Where in a file something went wrong. Lines and columns count from 1; columns count
/// characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file's path or another name for the text (`<stdin>`).
    pub source: String,
    /// Line and column, when the position is known.
    pub position: Option<(usize, usize)>,
}

impl Location {
    /// The location of byte `offset` in `text`.
    pub fn at(source: &str, text: &str, offset: usize) -> Location {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        Location {
            source: source.to_string(),
            position: Some((line, column)),
        }
    }

    /// The location of the start of `span`, or of the whole file when there is no span.
    pub fn of_span(source: &str, text: &str, span: Option<Range<usize>>) -> Location {
        match span {
            Some(span) => Location::at(source, text, span.start),
            None => Location {
                source: source.to_string(),
                position: None,
            },
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.source),
            None => f.write_str(&self.source),
        }
    }
}

/// Why a policy or expectations file could not be loaded.
///
/// Display gives `file:line:column: message` and, on the next line, `hint: ...` with a fix.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not valid TOML, or does not have the shape of the file (unknown or missing
    /// keys, wrong types).
    #[error("{location}: {message}{}", hint_line(hint))]
    Syntax {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
        /// How to fix it, if we can tell.
        hint: Option<String>,
    },
    /// The file has the right shape but a value is wrong: an unknown role, a bad duration or
    /// glob, a count of zero, a misspelled category.
    #[error("{location}: {message}{}", hint_line(hint))]
    Invalid {
        /// Where.
        location: Location,
        /// What is wrong.
        message: String,
        /// How to fix it, if we can tell.
        hint: Option<String>,
    },
}

fn hint_line(hint: &Option<String>) -> String {
    match hint {
        Some(hint) => format!("\nhint: {hint}"),
        None => String::new(),
    }
}

impl PolicyError {
    /// Where the error is, when it is in the text (not for read errors).
    pub fn location(&self) -> Option<&Location> {
        match self {
            PolicyError::Read { .. } => None,
            PolicyError::Syntax { location, .. } | PolicyError::Invalid { location, .. } => {
                Some(location)
            }
        }
    }

    /// The suggested fix, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            PolicyError::Read { .. } => None,
            PolicyError::Syntax { hint, .. } | PolicyError::Invalid { hint, .. } => hint.as_deref(),
        }
    }

    /// Turns a TOML deserialisation error into a located error, with hints for unknown keys,
    /// unknown values and missing keys.
    pub(crate) fn from_toml(source: &str, text: &str, error: &toml::de::Error) -> PolicyError {
        let full = error.message().trim();
        let hint = toml_hint(full);
        // The hint lists the allowed keys or values: keep the message short.
        let message = match (&hint, full.split_once(", expected ")) {
            (Some(_), Some((short, _))) if full.starts_with("unknown ") => short.to_string(),
            _ => full.to_string(),
        };
        PolicyError::Syntax {
            location: Location::of_span(source, text, error.span()),
            message,
            hint,
        }
    }
}

/// Hints for serde's messages: `unknown field `x`, expected one of `a`, `b``, `unknown variant`,
/// `missing field `x``.
fn toml_hint(message: &str) -> Option<String> {
    for (prefix, what) in [("unknown field `", "keys"), ("unknown variant `", "values")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (unknown, rest) = rest.split_once('`')?;
            let allowed: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            if allowed.is_empty() {
                return Some(format!("remove `{unknown}`: no {what} are allowed here"));
            }
            let list = allowed.join(", ");
            return Some(match nearest(unknown, allowed.iter().copied()) {
                Some(near) => format!("did you mean `{near}`? allowed {what} here: {list}"),
                None => format!("allowed {what} here: {list}"),
            });
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let (missing, _) = rest.split_once('`')?;
        return Some(format!("add `{missing} = ...` to this table"));
    }
    None
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    nearest_within(word, candidates, (word.chars().count() / 3).max(2))
}

/// The candidate closest to `word`, if at most `limit` edits away.
pub(crate) fn nearest_within<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance over characters where inserting, deleting, substituting or swapping two
/// neighbouring characters each cost one (optimal string alignment).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(Location::at("f", text, 0).to_string(), "f:1:1");
        assert_eq!(Location::at("f", text, 6).to_string(), "f:2:1");
        assert_eq!(Location::at("f", text, 9).to_string(), "f:2:4");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "é = 1";
        assert_eq!(Location::at("f", text, 3).to_string(), "f:1:3");
        // An offset inside a character does not panic.
        assert_eq!(Location::at("f", text, 1).to_string(), "f:1:1");
    }

    #[test]
    fn nearest_finds_typos_but_not_strangers() {
        let keys = ["categories", "tables", "flags"];
        assert_eq!(nearest("categorys", keys), Some("categories"));
        assert_eq!(nearest("flag", keys), Some("flags"));
        assert_eq!(nearest("zzzzzzzz", keys), None);
    }

    #[test]
    fn swapped_neighbours_cost_one_edit() {
        assert_eq!(edit_distance("DELEET", "DELETE"), 1);
        assert_eq!(edit_distance("DELEET", "SELECT"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(nearest("DELEET", ["SELECT", "DELETE"]), Some("DELETE"));
    }

    #[test]
    fn serde_unknown_field_messages_get_a_hint() {
        let hint = toml_hint("unknown field `membrs`, expected `members`").expect("hint");
        assert!(hint.contains("did you mean `members`"), "{hint}");
        let hint = toml_hint("unknown field `x`, expected one of `name`, `driver`").expect("hint");
        assert!(hint.contains("allowed keys here: name, driver"), "{hint}");
    }
}
