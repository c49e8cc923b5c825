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
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `candidate` matches the whole pattern.
    pub fn is_match(&self, candidate: &str) -> bool {
        self.matcher
            .is_match_candidate(&globset::Candidate::from_bytes(candidate.as_bytes()))
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
        let candidates = table_candidates(table, default_schema);
        self.patterns
            .iter()
            .find(|p| candidates.iter().any(|c| p.is_match(c)))
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

/// The names a table pattern is tried against: the full name as classified (`db.schema.table`),
/// `schema.table`, the bare `table`, and for an unqualified name `default_schema.table` when the
/// target says which schema unqualified names resolve to.
pub(crate) fn table_candidates(table: &TableName, default_schema: Option<&str>) -> Vec<String> {
    let parts = table.parts();
    let mut candidates = vec![table.to_string()];
    if parts.len() > 2 {
        candidates.push(parts[parts.len() - 2..].join("."));
    }
    if parts.len() > 1 {
        candidates.push(table.table().to_string());
    }
    if let (1, Some(schema)) = (parts.len(), default_schema) {
        candidates.push(format!("{schema}.{}", table.table()));
    }
    candidates
}

#[cfg(test)]
mod tests {
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
