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
            PolicyError::Syntax { hint, .. } | PolicyError::Invalid { hint, .. } => {
                hint.as_deref()
            }
        }
    }

    /// Turns a TOML deserialisation error into a located error, with hints for unknown keys,
    /// unknown values and missing keys.
    pub(crate) fn from_toml(source: &str, text: &str, error: &toml::de::Error) -> PolicyError {
        let message = error.message().trim().to_string();
        let hint = toml_hint(&message);
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
pub(crate) fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
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
    fn serde_unknown_field_messages_get_a_hint() {
        let hint = toml_hint("unknown field `membrs`, expected `members`").expect("hint");
        assert!(hint.contains("did you mean `members`"), "{hint}");
        let hint =
            toml_hint("unknown field `x`, expected one of `name`, `driver`").expect("hint");
        assert!(hint.contains("allowed keys here: name, driver"), "{hint}");
    }
}
