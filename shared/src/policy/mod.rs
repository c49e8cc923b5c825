//! The policy: which targets exist, who holds which role, what each role may run, which rules
//! add approvals or deny, and which columns are masked; and the evaluation of a request to
//! allow, needs approval or deny.
//!
//! Layout:
//! - `file`: the TOML shape serde reads; unknown keys are errors everywhere.
//! - `load`: checks every value and compiles the file into a [`Policy`]; [`PolicyError`]s point
//!   at `file:line:column` and carry a hint (`error`).
//! - `model`: the compiled policy: [`TargetSettings`], [`Role`], [`Permission`], [`Rule`].
//! - `principal`: typed [`Principal`]s (`slack:U024BE7LH`, `discord-role:...`, `console:alice`,
//!   `service:nightly-report`) and the [`Identity`] of a requester or approver.
//! - `glob`: case-insensitive glob [`Patterns`] over target, table and column names.
//! - `duration`: `30s`, `15m`, `4h`, `2d`.
//! - `decide`: [`Policy::decide`], a [`Request`] to a [`Decision`].
//! - `approval`: [`check_quorum`], whether given approvals satisfy a decision.
//! - `expectations`: policy tests ([`Expectations`]) and their runner.
//!
//! Everything here is pure except [`Policy::load`], [`Expectations::load`] and [`run_file`],
//! which read the file they are given.
//!
//! # The file
//!
//! ```toml
//! [settings]
//! allow_multi_statement = false   # default false
//! default_approval_ttl = "4h"     # default 4h
//! max_sql_bytes = 65536           # default 65536
//! sensitive_tables = ["payroll.*", "*.api_keys"]
//! read_only_functions = ["app.format_money"]   # your own functions known to be side-effect free
//!
//! [[targets]]
//! name = "prod"
//! driver = "postgres"             # postgres | mysql | sqlite
//! dialect = "postgres"            # default: the driver's; also "generic"
//! default_schema = "public"       # unqualified tables are also matched as public.<table>
//! row_limit = 1000                # default 1000
//! max_result_rows = 100           # default 100
//! statement_timeout = "30s"       # default 30s
//! review_channel = "#db-reviews"  # optional
//!
//! [roles.dba]
//! members = ["console:bob", "slack-group:S0DBA"]
//!
//! [[permissions]]
//! role = "dba"
//! targets = ["*"]                 # default ["*"]
//! categories = ["read", "write", "ddl"]
//! verbs = ["SELECT", "UPDATE"]    # optional: every verb of a statement must be listed
//! tables_allow = ["*"]            # default ["*"]
//! tables_deny = ["payroll.*"]     # default []
//!
//! [[rules]]
//! name = "delete or update without where"
//! when = { categories = ["write"], missing_where = true }
//! action = "require_approval"     # allow | require_approval | deny
//! approval = { from = ["dba"], count = 2, mode = "any_of", ttl = "1h" }
//! reason = "changes every row of the table"
//! row_limit = 100                 # optional: lowers the target's row limit
//!
//! [masking]
//! columns = ["*.ssn", "users.email", "*password*"]
//! ```
//!
//! Rule conditions (`when`): `targets`, `roles`, `categories`, `verbs`, `tables`,
//! `tables_written`, `flags`, `missing_where`, `sensitive`, `multi_statement`,
//! `estimated_rows_over`. A list matches when any entry matches; every condition given must
//! hold; the statement conditions (`categories`, `verbs`, `tables`, `tables_written`, `flags`,
//! `missing_where`, `sensitive`) must all hold for the same statement. A rule without
//! conditions matches every request.
//!
//! # Semantics: most restrictive wins
//!
//! [`Policy::decide`] works in this order:
//! 1. An unknown target is denied, naming the known targets.
//! 2. A requester that is a group principal (`slack-group:`, `discord-role:`) is denied, and so
//!    is one whose principal and groups hold no role.
//! 3. SQL the classifier cannot classify (parse error, empty, too large, executable comment) is
//!    denied with the classifier's message. Category `unknown` is not special-cased: rules say
//!    what happens to it.
//! 4. Deny reasons are then collected, all of them:
//!    - input with more than one statement, unless `settings.allow_multi_statement`;
//!    - each statement no permission covers. Permissions are grants: a statement needs one
//!      permission of one of the requester's roles whose `targets` match the target, whose
//!      `categories` hold the statement's category, whose `verbs` (if given) hold every verb of
//!      the statement, and under which every table it reads or writes matches `tables_allow`
//!      and none matches `tables_deny`;
//!    - each matching rule whose action is `deny`.
//! 5. Any deny reason: the outcome is deny, with every deny reason listed.
//! 6. Otherwise, if rules with `require_approval` match, the outcome is needs approval, and
//!    every one of their requirements must be satisfied (they are not merged; one approver may
//!    count for several). The approval TTL is the shortest among them.
//! 7. Otherwise allow. A matching `allow` rule never loosens anything: it can only lower the
//!    row limit and shows in `matched_rules`.
//!
//! The decision's row limit is the target's `row_limit`, lowered by the `row_limit` of every
//! matching rule (whatever its action).
//!
//! `estimated_rows_over = N` holds when the request's estimate is over N, and also when there is
//! no estimate (fail closed); the reason then says the estimate was unavailable.
//!
//! Table globs match without regard to case against the full name as classified, against
//! `schema.table` and the bare `table`, and for an unqualified name against
//! `<default_schema>.table` when the target sets `default_schema`.
//!
//! Approvals ([`check_quorum`]): the requester's own approval never counts; services and group
//! principals never approve; an approver counts once; an approver counts for a requirement
//! when their principal or a group of theirs holds one of its roles; `any_of` needs `count`
//! approvers in total, `all_of` needs `count` from each role, one role per approver.
//!
//! [`Outcome::approvals_required`] (and `approvals` in expectations) is the number of approvals
//! that satisfies every requirement when each approver holds one of the roles involved
//! ([`approvals_needed`]).
//!
//! Masking ([`Policy::masks_column`]): a pattern without `.` matches the column name, one with
//! `.` matches `table.column`; a column whose table is unknown is masked when any pattern's
//! column part matches it.
//!
//! The policy version is the lowercase hex SHA-256 of the file's bytes
//! ([`Policy::short_version`]: its first 12 characters).
//!
//! # Loading
//!
//! These are errors, reported at `file:line:column` with a `hint:` line: TOML syntax; unknown
//! keys (with the allowed keys and the nearest one); unknown roles referenced by a permission,
//! a rule or an approval (with the defined roles); target patterns that match no target;
//! misspelled categories, flags, verbs, actions, modes, drivers and dialects (with the nearest
//! valid one); bad durations and globs; principals with an unknown kind or a malformed id;
//! empty condition lists; approval counts and row limits of zero; an approval table on a rule
//! that does not require approval, or none on one that does; duplicate target or rule names;
//! `sensitive = true` without `settings.sensitive_tables`; a policy without targets.

mod approval;
mod decide;
mod duration;
mod error;
mod expectations;
mod file;
mod glob;
mod load;
mod model;
mod principal;

use std::path::Path;

use crate::sql::ClassifyOptions;

pub use approval::{
    approvals_needed, check_quorum, IgnoredApproval, QuorumStatus, RequirementStatus,
};
pub use decide::{ApprovalRequirement, Decision, Outcome, OutcomeKind, Request};
pub use duration::format_duration;
pub use error::{Location, PolicyError};
pub use expectations::{run_file, Case, CaseResult, ExpectationReport, Expectations};
pub use glob::{Pattern, Patterns};
pub use model::{
    Action, ApprovalMode, ApprovalSpec, Conditions, Driver, Masking, Permission, Role, Rule,
    Settings, TargetSettings, DEFAULT_APPROVAL_TTL, DEFAULT_MAX_RESULT_ROWS, DEFAULT_ROW_LIMIT,
    DEFAULT_STATEMENT_TIMEOUT,
};
pub use principal::{Approver, Identity, Principal, PrincipalError, PrincipalKind, Requester};

/// A loaded, checked policy. Cheap to share; evaluation never mutates it.
#[derive(Debug, Clone)]
pub struct Policy {
    source: String,
    version: String,
    settings: Settings,
    /// Shared with every decision that names them, without copying.
    targets: Vec<std::sync::Arc<TargetSettings>>,
    roles: Vec<Role>,
    permissions: Vec<Permission>,
    rules: Vec<Rule>,
    masking: Masking,
    /// Built once from the settings: every decision classifies with them.
    classify_options: ClassifyOptions,
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = load::read_text(path)?;
        Policy::from_str(&text, &path.display().to_string())
    }

    /// Checks policy text; `source_name` names it in errors (a path, or `<stdin>`).
    pub fn from_str(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        load::parse_policy(text, source_name)
    }

    /// Where the policy came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Lowercase hex SHA-256 of the file's bytes, recorded with every decision.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The first 12 characters of the version, for display.
    pub fn short_version(&self) -> &str {
        self.version.get(..12).unwrap_or(&self.version)
    }

    /// Policy-wide settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The targets, in file order.
    pub fn targets(&self) -> &[std::sync::Arc<TargetSettings>] {
        &self.targets
    }

    /// The target with this exact name.
    pub fn target(&self, name: &str) -> Option<&std::sync::Arc<TargetSettings>> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The roles, by name.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The permissions, in file order.
    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The masking patterns.
    pub fn masking(&self) -> &Masking {
        &self.masking
    }

    /// Options to classify SQL with, as the policy sets them.
    pub fn classify_options(&self) -> &ClassifyOptions {
        &self.classify_options
    }

    /// The roles an identity holds through its principal or any of its groups, by name.
    pub fn roles_of(&self, identity: &Identity) -> Vec<String> {
        self.roles
            .iter()
            .filter(|role| identity.all_principals().any(|p| role.members.contains(p)))
            .map(|role| role.name.clone())
            .collect()
    }

    /// Decides a request. Never panics, whatever the SQL.
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        decide::decide(self, request)
    }

    /// Whether `approvers` satisfy `requirements` for a request by `requester`
    /// (see [`check_quorum`]).
    pub fn check_approvals(
        &self,
        requirements: &[ApprovalRequirement],
        requester: &Identity,
        approvers: &[Identity],
    ) -> QuorumStatus {
        check_quorum(self, requirements, requester, approvers)
    }

    /// Whether a result column is masked in chat. `table` is the column's table as
    /// `table` or `schema.table`, when known.
    ///
    /// Patterns without a `.` match the column name; patterns with one match
    /// `table.column` (and `schema.table.column`). When the table is unknown, a pattern's part
    /// after its last `.` is matched against the column: unknown provenance masks (fail closed).
    pub fn masks_column(&self, table: Option<&str>, column: &str) -> bool {
        let patterns = &self.masking.columns;
        match table {
            Some(table) => {
                let mut candidates = vec![column.to_string(), format!("{table}.{column}")];
                if let Some((_, bare)) = table.rsplit_once('.') {
                    candidates.push(format!("{bare}.{column}"));
                }
                candidates.iter().any(|c| patterns.is_match(c))
            }
            None => patterns.iter().any(|p| {
                p.is_match(column)
                    || p.as_str().rsplit_once('.').is_some_and(|(_, col)| {
                        Pattern::new(col).map_or(true, |col| col.is_match(column))
                    })
            }),
        }
    }
}

#[cfg(test)]
mod tests;
