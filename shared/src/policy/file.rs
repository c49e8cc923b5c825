//! The policy file as TOML: the shape serde reads, before any value is checked.
//!
//! Every table refuses unknown keys, so a misspelled key is an error rather than a rule that
//! silently never applies. Values that are checked later (names, globs, durations, principals)
//! keep their position in the file so errors can point at them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string with its byte range in the file.
pub(crate) type Str = Spanned<String>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    #[serde(default)]
    pub settings: SettingsFile,
    #[serde(default)]
    pub targets: Vec<TargetFile>,
    #[serde(default)]
    pub roles: BTreeMap<Str, RoleFile>,
    #[serde(default)]
    pub permissions: Vec<PermissionFile>,
    #[serde(default)]
    pub rules: Vec<RuleFile>,
    #[serde(default)]
    pub masking: MaskingFile,
}

/// `[settings]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsFile {
    pub allow_multi_statement: Option<bool>,
    pub default_approval_ttl: Option<Str>,
    pub max_sql_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub sensitive_tables: Vec<Str>,
    #[serde(default)]
    pub read_only_functions: Vec<Str>,
}

/// One `[[targets]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetFile {
    pub name: Str,
    pub driver: Str,
    pub dialect: Option<Str>,
    pub default_schema: Option<Str>,
    pub row_limit: Option<Spanned<u64>>,
    pub max_result_rows: Option<Spanned<u64>>,
    pub statement_timeout: Option<Str>,
    pub review_channel: Option<Str>,
}

/// One `[roles.<name>]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleFile {
    #[serde(default)]
    pub members: Vec<Str>,
}

/// One `[[permissions]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermissionFile {
    pub role: Str,
    pub targets: Option<Vec<Str>>,
    pub categories: Spanned<Vec<Str>>,
    pub verbs: Option<Spanned<Vec<Str>>>,
    pub tables_allow: Option<Spanned<Vec<Str>>>,
    #[serde(default)]
    pub tables_deny: Vec<Str>,
}

/// One `[[rules]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    pub name: Str,
    #[serde(default)]
    pub when: WhenFile,
    pub action: Str,
    pub approval: Option<Spanned<ApprovalFile>>,
    pub reason: Option<Str>,
    pub row_limit: Option<Spanned<u64>>,
}

/// A rule's `when` table: every condition given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenFile {
    pub targets: Option<Spanned<Vec<Str>>>,
    pub roles: Option<Spanned<Vec<Str>>>,
    pub categories: Option<Spanned<Vec<Str>>>,
    pub verbs: Option<Spanned<Vec<Str>>>,
    pub tables: Option<Spanned<Vec<Str>>>,
    pub tables_written: Option<Spanned<Vec<Str>>>,
    pub flags: Option<Spanned<Vec<Str>>>,
    pub missing_where: Option<bool>,
    pub sensitive: Option<bool>,
    pub multi_statement: Option<bool>,
    pub estimated_rows_over: Option<u64>,
}

/// A rule's `approval` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalFile {
    pub from: Spanned<Vec<Str>>,
    pub count: Option<Spanned<u64>>,
    pub mode: Option<Str>,
    pub ttl: Option<Str>,
}

/// `[masking]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MaskingFile {
    #[serde(default)]
    pub columns: Vec<Str>,
}
