//! Glob patterns over target names, table names and column names, matched without regard to
//! case.
//!
//! `*` matches any run of characters including `.`, `?` one character, `[abc]` a class and
//! `{a,b}` alternatives.

use globset::{GlobBuilder, GlobMatcher};

use crate::sql::TableName;

/// One compiled pattern, keeping the text it was written as.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
    /// A cheaper test for the common shapes; every decision matches many patterns.
    shape: Shape,
}

/// The common pattern shapes, tested without the glob engine (lower-cased text kept).
#[derive(Debug, Clone)]
enum Shape {
    /// `*`.
    Everything,
    /// No wildcard at all.
    Exact(String),
    /// `prefix*`, the prefix without wildcards.
    Prefix(String),
    /// `*suffix`, the suffix without wildcards.
    Suffix(String),
    /// Anything else: ask the glob engine.
    Glob,
}

impl Shape {
    fn of(text: &str) -> Shape {
        let is_plain = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', '\\']);
        if !text.is_ascii() {
            // Unicode case folding (the Kelvin sign folds to `k`) is the glob engine's job.
            Shape::Glob
        } else if text == "*" {
            Shape::Everything
        } else if is_plain(text) {
            Shape::Exact(text.to_ascii_lowercase())
        } else if let Some(prefix) = text.strip_suffix('*').filter(|p| is_plain(p)) {
            Shape::Prefix(prefix.to_ascii_lowercase())
        } else if let Some(suffix) = text.strip_prefix('*').filter(|s| is_plain(s)) {
            Shape::Suffix(suffix.to_ascii_lowercase())
        } else {
            Shape::Glob
        }
    }
}

/// ASCII-case-insensitive `starts_with`.
fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// ASCII-case-insensitive `ends_with`.
fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

impl Pattern {
    /// Compiles a pattern. The error is globset's description of what is wrong.
    pub fn new(text: &str) -> Result<Pattern, String> {
        if text.trim().is_empty() {
            return Err("the pattern is empty".to_string());
        }
        let glob = GlobBuilder::new(text)
            .case_insensitive(true)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(Pattern {
            text: text.to_string(),
            matcher: glob.compile_matcher(),
            shape: Shape::of(text),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `candidate` matches the whole pattern.
    pub fn is_match(&self, candidate: &str) -> bool {
        // Non-ASCII text goes to the glob engine, which folds case fully.
        if !candidate.is_ascii() {
            return self
                .matcher
                .is_match_candidate(&globset::Candidate::from_bytes(candidate.as_bytes()));
        }
        match &self.shape {
            Shape::Everything => true,
            Shape::Exact(text) => candidate.eq_ignore_ascii_case(text),
            Shape::Prefix(prefix) => starts_with_ignore_case(candidate, prefix),
            Shape::Suffix(suffix) => ends_with_ignore_case(candidate, suffix),
            Shape::Glob => self
                .matcher
                .is_match_candidate(&globset::Candidate::from_bytes(candidate.as_bytes())),
        }
    }
}

/// A list of patterns; matches when any of them does.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    patterns: Vec<Pattern>,
}

impl Patterns {
    /// A list from already compiled patterns.
    pub fn new(patterns: Vec<Pattern>) -> Patterns {
        Patterns { patterns }
    }

    /// A list with the single pattern `*`.
    pub fn everything() -> Patterns {
        Patterns {
            patterns: Pattern::new("*").into_iter().collect(),
        }
    }

    /// True when there are no patterns (nothing matches).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns.
    pub fn iter(&self) -> impl Iterator<Item = &Pattern> {
        self.patterns.iter()
    }

    /// The first pattern matching `candidate`.
    pub fn first_match(&self, candidate: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.is_match(candidate))
    }

    /// True when any pattern matches `candidate`.
    pub fn is_match(&self, candidate: &str) -> bool {
        self.first_match(candidate).is_some()
    }

    /// The first pattern matching a table under any of its names: the full name, `schema.table`,
    /// the bare table, and `default_schema.table` for an unqualified name.
    pub fn match_table(&self, table: &TableName, default_schema: Option<&str>) -> Option<&Pattern> {
        // The borrowed names first; `default_schema.table` is built only if a pattern needs it.
        let len = table.len();
        let borrowed = [
            Some(table.as_str()),
            (len > 2).then(|| table.suffix(len - 2)),
            (len > 1).then(|| table.table()),
        ];
        let mut qualified: Option<String> = None;
        self.patterns.iter().find(|p| {
            if borrowed.iter().flatten().any(|c| p.is_match(c)) {
                return true;
            }
            match (len, default_schema) {
                (1, Some(schema)) => {
                    let name =
                        qualified.get_or_insert_with(|| format!("{schema}.{}", table.table()));
                    p.is_match(name)
                }
                _ => false,
            }
        })
    }

    /// The patterns as written, joined with `, `.
    pub fn describe(&self) -> String {
        self.patterns
            .iter()
            .map(Pattern::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_shapes_agree_with_the_glob_engine() {
        let patterns = [
            "*",
            "orders",
            "payroll.*",
            "*.api_keys",
            "pay*.x",
            "a?c",
            "{a,b}.t",
            "[ab]x",
            "*",
        ];
        let candidates = [
            "orders",
            "ORDERS",
            "payroll.salaries",
            "Payroll.",
            "public.api_keys",
            "api_keys",
            "x.API_KEYS",
            "payroll",
            "abc",
            "a.t",
            "bx",
            "",
            "pay.x",
            "ordersx",
        ];
        for text in patterns {
            let pattern = Pattern::new(text).expect("valid pattern");
            for candidate in candidates {
                let engine = pattern
                    .matcher
                    .is_match_candidate(&globset::Candidate::from_bytes(candidate.as_bytes()));
                assert_eq!(pattern.is_match(candidate), engine, "{text} vs {candidate}");
            }
        }
    }

    use super::*;

    fn table(name: &str) -> TableName {
        TableName::from_parts(name.split('.').map(str::to_string).collect())
    }

    fn patterns(texts: &[&str]) -> Patterns {
        Patterns::new(
            texts
                .iter()
                .map(|t| Pattern::new(t).expect("valid pattern"))
                .collect(),
        )
    }

    #[test]
    fn table_globs_match_schema_qualified_and_bare_names() {
        let p = patterns(&["payroll.*"]);
        assert!(p.match_table(&table("payroll.salaries"), None).is_some());
        assert!(p.match_table(&table("public.orders"), None).is_none());
        let bare = patterns(&["orders"]);
        assert!(bare.match_table(&table("sales.orders"), None).is_some());
    }

    #[test]
    fn table_globs_ignore_case() {
        let p = patterns(&["*.API_KEYS"]);
        assert!(p.match_table(&table("public.api_keys"), None).is_some());
    }

    #[test]
    fn unqualified_tables_are_matched_in_the_default_schema() {
        let p = patterns(&["*.api_keys"]);
        assert!(p.match_table(&table("api_keys"), None).is_none());
        assert!(p.match_table(&table("api_keys"), Some("public")).is_some());
    }

    #[test]
    fn three_part_names_match_on_schema_and_table() {
        let p = patterns(&["payroll.*"]);
        assert!(p.match_table(&table("hr.payroll.salaries"), None).is_some());
    }

    #[test]
    fn bad_and_empty_patterns_are_errors() {
        assert!(Pattern::new("[abc").is_err());
        assert!(Pattern::new("  ").is_err());
    }
}
