//! The policy as evaluation sees it: every value checked and compiled.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::sql::{Category, Dialect, Flag};

use super::duration::format_duration;
use super::glob::Patterns;
use super::principal::Principal;

/// Default for a target's `row_limit`.
pub const DEFAULT_ROW_LIMIT: u64 = 1000;
/// Default for a target's `max_result_rows`.
pub const DEFAULT_MAX_RESULT_ROWS: u64 = 100;
/// Default for a target's `statement_timeout` (30 seconds).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for `settings.default_approval_ttl` (4 hours).
pub const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(4 * 60 * 60);

/// `[settings]`: policy-wide behaviour.
#[derive(Debug, Clone)]
pub struct Settings {
    /// When false (the default), input with more than one statement is denied.
    pub allow_multi_statement: bool,
    /// How long approvals stay valid when a rule does not say.
    pub default_approval_ttl: Duration,
    /// Inputs larger than this are denied before parsing (`ClassifyOptions::max_input_bytes`).
    pub max_sql_bytes: usize,
    /// Tables whose use rules can single out with `sensitive = true`.
    pub sensitive_tables: Patterns,
    /// User-defined or extension functions the team vouches are free of side effects
    /// (`ClassifyOptions::pure_functions`); a call to any other unknown function is `unknown`.
    pub read_only_functions: std::collections::BTreeSet<String>,
}

/// The database driver of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

impl Driver {
    /// Every driver.
    pub const ALL: [Driver; 3] = [Driver::Postgres, Driver::Mysql, Driver::Sqlite];

    /// The name used in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Postgres => "postgres",
            Driver::Mysql => "mysql",
            Driver::Sqlite => "sqlite",
        }
    }

    /// Parses a driver name.
    pub fn parse(name: &str) -> Option<Driver> {
        Driver::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The dialect a target with this driver is parsed with unless the policy says otherwise.
    pub fn default_dialect(self) -> Dialect {
        match self {
            Driver::Postgres => Dialect::Postgres,
            Driver::Mysql => Dialect::Mysql,
            Driver::Sqlite => Dialect::Sqlite,
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[targets]]` entry: a database requests can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSettings {
    /// The name requests use (`/query prod ...`).
    pub name: String,
    /// Which database driver the executor uses.
    pub driver: Driver,
    /// The dialect SQL for this target is parsed with.
    pub dialect: Dialect,
    /// The schema unqualified table names resolve to, so `*.api_keys` also matches `api_keys`.
    pub default_schema: Option<String>,
    /// Most rows a write may touch before the executor rolls it back.
    pub row_limit: u64,
    /// Most rows shown in chat.
    pub max_result_rows: u64,
    /// How long a statement may run.
    pub statement_timeout: Duration,
    /// Where approval requests are posted, if not in the requesting channel.
    pub review_channel: Option<String>,
}

impl TargetSettings {
    /// The target in JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "driver": self.driver.as_str(),
            "dialect": self.dialect.as_str(),
            "default_schema": self.default_schema,
            "row_limit": self.row_limit,
            "max_result_rows": self.max_result_rows,
            "statement_timeout": format_duration(self.statement_timeout),
            "statement_timeout_seconds": self.statement_timeout.as_secs(),
            "review_channel": self.review_channel,
        })
    }
}

/// A role and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role's name (`dba`).
    pub name: String,
    /// Users and groups holding the role; a group grants the role to everyone in it.
    pub members: Vec<Principal>,
}

/// One `[[permissions]]` entry: what a role may run at all.
#[derive(Debug, Clone)]
pub struct Permission {
    /// The role granted.
    pub role: String,
    /// Targets the grant covers (globs over target names).
    pub targets: Patterns,
    /// Categories of statement the grant covers.
    pub categories: BTreeSet<Category>,
    /// When set, every verb of a statement must be one of these.
    pub verbs: Option<BTreeSet<String>>,
    /// Tables the grant covers (globs); defaults to every table.
    pub tables_allow: Patterns,
    /// Tables the grant never covers, even if `tables_allow` matches.
    pub tables_deny: Patterns,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing more is required. Never loosens another rule or a permission.
    Allow,
    /// Approvals are required before the request runs.
    RequireApproval(ApprovalSpec),
    /// The request is refused.
    Deny,
}

impl Action {
    /// The name used in policies.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::RequireApproval(_) => "require_approval",
            Action::Deny => "deny",
        }
    }
}

/// How approvals from several roles combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalMode {
    /// `count` approvals in total from members of any listed role.
    AnyOf,
    /// `count` approvals from each listed role, each approver counted for one role only.
    AllOf,
}

impl ApprovalMode {
    /// The name used in policies and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::AnyOf => "any_of",
            ApprovalMode::AllOf => "all_of",
        }
    }

    /// Parses a mode name.
    pub fn parse(name: &str) -> Option<ApprovalMode> {
        match name {
            "any_of" => Some(ApprovalMode::AnyOf),
            "all_of" => Some(ApprovalMode::AllOf),
            _ => None,
        }
    }
}

impl fmt::Display for ApprovalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who must approve, as a rule states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSpec {
    /// Roles whose members may approve.
    pub from: Vec<String>,
    /// Approvals needed: in total (`any_of`) or from each role (`all_of`). At least 1.
    pub count: u32,
    /// How the roles combine.
    pub mode: ApprovalMode,
    /// How long the approvals stay valid.
    pub ttl: Duration,
    /// `2 approvals from dba`, written once at load.
    pub(crate) phrase: String,
}

/// A rule's conditions. Each list matches when any entry matches; every condition given must
/// hold. Statement conditions must all hold for the same statement.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// The request's target matches one of these globs.
    pub targets: Option<Patterns>,
    /// The requester holds one of these roles.
    pub roles: Option<BTreeSet<String>>,
    /// The statement's category is one of these.
    pub categories: Option<BTreeSet<Category>>,
    /// One of the statement's verbs (top-level or nested) is one of these.
    pub verbs: Option<BTreeSet<String>>,
    /// A table the statement reads or writes matches one of these globs.
    pub tables: Option<Patterns>,
    /// A table the statement writes matches one of these globs.
    pub tables_written: Option<Patterns>,
    /// The statement has one of these flags.
    pub flags: Option<BTreeSet<Flag>>,
    /// The statement is (true) or is not (false) an UPDATE or DELETE without WHERE.
    pub missing_where: Option<bool>,
    /// The statement does (true) or does not (false) touch a `settings.sensitive_tables` table.
    pub sensitive: Option<bool>,
    /// The input does (true) or does not (false) hold more than one statement.
    pub multi_statement: Option<bool>,
    /// The request's row estimate is over this, or unknown (fail closed).
    pub estimated_rows_over: Option<u64>,
}

impl Conditions {
    /// True when some condition looks at individual statements.
    pub fn has_statement_conditions(&self) -> bool {
        self.categories.is_some()
            || self.verbs.is_some()
            || self.tables.is_some()
            || self.tables_written.is_some()
            || self.flags.is_some()
            || self.missing_where.is_some()
            || self.sensitive.is_some()
    }
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name, unique in the policy, quoted in reasons.
    pub name: String,
    /// When the rule applies.
    pub when: Conditions,
    /// What it does when it applies.
    pub action: Action,
    /// Why, in the policy author's words.
    pub reason: Option<String>,
    /// Lowers the row limit of requests the rule applies to.
    pub row_limit: Option<u64>,
    /// `rule 'name': reason`, written once at load: every decision that matches quotes it.
    pub(crate) because: String,
}

/// `[masking]`: columns masked in results posted to chat.
#[derive(Debug, Clone, Default)]
pub struct Masking {
    /// Patterns over `column`, `table.column` or `schema.table.column`.
    pub columns: Patterns,
}

/// Upper-cases a verb and collapses inner whitespace (`drop  table` is `DROP TABLE`).
pub(crate) fn normalize_verb(verb: &str) -> String {
    verb.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}
