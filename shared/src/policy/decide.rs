//! Evaluation: a request (target, requester, SQL, row estimate) to allow, needs approval or deny,
//! with every reason written out.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::sql::{classify, Category, Classification, Dialect, Flag, StatementClass, TableName};

use super::approval::{approvals_needed, approvals_phrase};
use super::duration::format_duration;
use super::model::{Action, ApprovalMode, Rule, TargetSettings};
use super::principal::Identity;
use super::Policy;

/// What is asked: run `sql` on `target` as `requester`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The target's name as the requester typed it.
    pub target: &'a str,
    /// Who asks, with the groups the chat platform reports for them.
    pub requester: &'a Identity,
    /// The SQL text, exactly as it would run.
    pub sql: &'a str,
    /// Rows the statement would touch, if the executor's preflight estimated it.
    pub estimated_rows: Option<u64>,
}

/// One set of approvals a matching rule requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequirement {
    /// The rule that requires it.
    pub rule: String,
    /// Roles whose members may approve.
    pub from: Vec<String>,
    /// Approvals needed: in total (`any_of`) or from each role (`all_of`).
    pub count: u32,
    /// How the roles combine.
    pub mode: ApprovalMode,
    /// How long the approvals stay valid.
    pub ttl: Duration,
    /// The sentence explaining the requirement.
    pub reason: String,
}

impl ApprovalRequirement {
    /// `2 approvals from dba`, `1 approval from dba or oncall`, `1 approval from each of dba and
    /// security`.
    pub fn describe(&self) -> String {
        approvals_phrase(self.count, self.mode, &self.from)
    }

    /// The requirement in JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rule": self.rule,
            "from": self.from,
            "count": self.count,
            "mode": self.mode.as_str(),
            "ttl": format_duration(self.ttl),
            "ttl_seconds": self.ttl.as_secs(),
            "reason": self.reason,
        })
    }
}

/// The three possible outcomes, without their details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// Runs at once.
    Allow,
    /// Runs once the required approvals are given.
    NeedsApproval,
    /// Never runs.
    Deny,
}

impl OutcomeKind {
    /// `allow`, `needs_approval` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Allow => "allow",
            OutcomeKind::NeedsApproval => "needs_approval",
            OutcomeKind::Deny => "deny",
        }
    }

    /// Parses `allow`, `needs_approval` or `deny`.
    pub fn parse(name: &str) -> Option<OutcomeKind> {
        [
            OutcomeKind::Allow,
            OutcomeKind::NeedsApproval,
            OutcomeKind::Deny,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Runs at once.
    Allow,
    /// Runs once every listed requirement is satisfied.
    NeedsApproval(Vec<ApprovalRequirement>),
    /// Never runs.
    Deny,
}

impl Outcome {
    /// The outcome without details.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Allow => OutcomeKind::Allow,
            Outcome::NeedsApproval(_) => OutcomeKind::NeedsApproval,
            Outcome::Deny => OutcomeKind::Deny,
        }
    }

    /// `allow`, `needs_approval` or `deny`.
    pub fn as_str(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The approval requirements; empty unless the outcome is `NeedsApproval`.
    pub fn requirements(&self) -> &[ApprovalRequirement] {
        match self {
            Outcome::NeedsApproval(requirements) => requirements,
            _ => &[],
        }
    }

    /// How long approvals stay valid: the shortest TTL of all requirements.
    pub fn approval_ttl(&self) -> Option<Duration> {
        self.requirements().iter().map(|r| r.ttl).min()
    }

    /// How many approvals satisfy every requirement, counting each approver for one role (see
    /// [`approvals_needed`]). Zero unless the outcome is `NeedsApproval`.
    pub fn approvals_required(&self) -> u64 {
        approvals_needed(self.requirements())
    }
}

/// A decision with everything needed to explain it, sign it and audit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, needs approval (with the requirements) or deny.
    pub outcome: Outcome,
    /// Why, one full sentence each: every deny reason for a deny, every requirement for needs
    /// approval, one sentence for allow.
    pub reasons: Vec<String>,
    /// The SQL as classified with the target's dialect (the generic dialect for an unknown
    /// target).
    pub classification: Classification,
    /// SHA-256 of the policy file that decided.
    pub policy_version: String,
    /// The target's settings, when the target exists.
    pub target: Option<std::sync::Arc<TargetSettings>>,
    /// The requester's roles.
    pub roles: Vec<String>,
    /// Most rows a write may touch: the target's row limit, lowered by matching rules.
    pub row_limit: Option<u64>,
    /// Names of every rule whose conditions matched, in policy order.
    pub matched_rules: Vec<String>,
}

impl Decision {
    /// The decision in the JSON shape of `countersign policy check --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let approval = match &self.outcome {
            Outcome::NeedsApproval(requirements) => {
                let ttl = self.outcome.approval_ttl().unwrap_or_default();
                serde_json::json!({
                    "approvals_required": self.outcome.approvals_required(),
                    "ttl": format_duration(ttl),
                    "ttl_seconds": ttl.as_secs(),
                    "requirements": requirements.iter().map(ApprovalRequirement::to_json).collect::<Vec<_>>(),
                })
            }
            _ => serde_json::Value::Null,
        };
        serde_json::json!({
            "outcome": self.outcome.as_str(),
            "reasons": self.reasons,
            "approval": approval,
            "target": self.target.as_deref().map(TargetSettings::to_json),
            "roles": self.roles,
            "row_limit": self.row_limit,
            "matched_rules": self.matched_rules,
            "policy_version": self.policy_version,
            "classification": self.classification.to_json(),
        })
    }
}

/// Evaluates a request. See the module documentation of [`super`] for the semantics.
pub(crate) fn decide(policy: &Policy, request: &Request<'_>) -> Decision {
    let target = policy.target(request.target);
    let dialect = target.map_or(Dialect::Generic, |t| t.dialect);
    let classification = classify(request.sql, dialect, policy.classify_options());
    let roles = policy.roles_of(request.requester);
    let mut decision = Decision {
        outcome: Outcome::Deny,
        reasons: Vec::new(),
        classification,
        policy_version: policy.version().to_string(),
        target: target.cloned(),
        roles,
        row_limit: target.map(|t| t.row_limit),
        matched_rules: Vec::new(),
    };
    let Some(target) = target else {
        let known: Vec<&str> = policy.targets().iter().map(|t| t.name.as_str()).collect();
        decision.reasons.push(format!(
            "unknown target '{}'; known targets: {}",
            request.target,
            known.join(", ")
        ));
        return decision;
    };
    if request.requester.principal.is_group() {
        decision.reasons.push(format!(
            "{} is a group, and requests come from one person or service",
            request.requester.principal
        ));
        return decision;
    }
    if decision.roles.is_empty() {
        decision.reasons.push(format!(
            "{} belongs to no role in this policy, so they may not run anything; ask a policy \
             owner to add them, or one of their groups, to a role",
            who(request.requester, &[])
        ));
        return decision;
    }
    if let Some(error) = &decision.classification.error {
        decision.reasons.push(error.to_string());
        return decision;
    }

    let eval = Evaluation {
        policy,
        target,
        request,
        roles: &decision.roles,
        statements: &decision.classification.statements,
    };
    let mut denies = Vec::new();
    let count = eval.statements.len();
    if count > 1 && !policy.settings().allow_multi_statement {
        denies.push(format!(
            "the input holds {count} statements, and this policy accepts one statement at a time \
             (settings.allow_multi_statement is false)"
        ));
    }
    for index in 0..count {
        if let Err(reason) = eval.permitted(index) {
            denies.push(reason);
        }
    }
    let mut requirements = Vec::new();
    let mut row_limit = decision.row_limit;
    for rule in policy.rules() {
        let Some(hit) = eval.matches(rule) else {
            continue;
        };
        decision.matched_rules.push(rule.name.clone());
        if let Some(limit) = rule.row_limit {
            row_limit = Some(row_limit.map_or(limit, |l| l.min(limit)));
        }
        let because = rule_because(rule, &hit);
        let subject = eval.subject(&hit);
        match &rule.action {
            Action::Allow => {}
            Action::Deny => denies.push(format!(
                "{subject} on {} is denied ({because})",
                target.name
            )),
            Action::RequireApproval(spec) => {
                let mut reason = subject;
                for part in [
                    " on ",
                    &target.name,
                    " needs ",
                    &spec.phrase,
                    " (",
                    &because,
                    ")",
                ] {
                    reason.push_str(part);
                }
                requirements.push(ApprovalRequirement {
                    rule: rule.name.clone(),
                    from: spec.from.clone(),
                    count: spec.count,
                    mode: spec.mode,
                    ttl: spec.ttl,
                    reason,
                });
            }
        }
    }
    decision.row_limit = row_limit;
    if !denies.is_empty() {
        decision.reasons = denies;
        decision.outcome = Outcome::Deny;
    } else if !requirements.is_empty() {
        decision.reasons = requirements.iter().map(|r| r.reason.clone()).collect();
        decision.outcome = Outcome::NeedsApproval(requirements);
    } else {
        let allowing: Vec<String> = decision
            .matched_rules
            .iter()
            .map(|name| format!("'{name}'"))
            .collect();
        let rules = if allowing.is_empty() {
            "no rule requires approval or denies it".to_string()
        } else {
            format!("matching rules {} allow it", allowing.join(", "))
        };
        decision.reasons.push(format!(
            "{} on {} is allowed for {}: {rules}",
            eval.subject(&Hit::default()),
            target.name,
            who(request.requester, &decision.roles)
        ));
        decision.outcome = Outcome::Allow;
    }
    decision
}

/// `console:alice (roles: engineer)`.
fn who(identity: &Identity, roles: &[String]) -> String {
    if roles.is_empty() {
        let groups: Vec<String> = identity.groups.iter().map(|g| g.to_string()).collect();
        if groups.is_empty() {
            identity.principal.to_string()
        } else {
            format!("{} (groups: {})", identity.principal, groups.join(", "))
        }
    } else {
        format!("{} (roles: {})", identity.principal, roles.join(", "))
    }
}

/// Why a rule matched: which statement, which tables, what about the estimate.
#[derive(Debug, Default)]
struct Hit {
    /// The first statement that met every statement condition.
    statement: Option<usize>,
    /// Tables that made a table condition hold, for the reason.
    tables: Vec<String>,
    /// What the row estimate condition saw.
    estimate: Option<String>,
}

fn rule_because(rule: &Rule, hit: &Hit) -> String {
    let mut text = rule.because.clone();
    if let Some(estimate) = &hit.estimate {
        text.push_str(if rule.reason.is_some() { "; " } else { ": " });
        text.push_str(estimate);
    }
    text
}

struct Evaluation<'a> {
    policy: &'a Policy,
    target: &'a TargetSettings,
    request: &'a Request<'a>,
    roles: &'a [String],
    statements: &'a [StatementClass],
}

impl Evaluation<'_> {
    fn default_schema(&self) -> Option<&str> {
        self.target.default_schema.as_deref()
    }

    /// Tables read and written by a statement, each once.
    fn tables(statement: &StatementClass) -> Vec<&TableName> {
        let mut tables: Vec<&TableName> = Vec::new();
        for table in statement
            .tables_read
            .iter()
            .chain(&statement.tables_written)
        {
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
        tables
    }

    /// `DELETE without WHERE`, `statement 2 (UPDATE)`, with the tables that mattered.
    fn subject(&self, hit: &Hit) -> String {
        let mut subject = match hit.statement {
            Some(index) => {
                let described = self
                    .statements
                    .get(index)
                    .map(describe)
                    .unwrap_or_else(|| "the statement".to_string());
                if self.statements.len() > 1 {
                    format!("statement {} ({described})", index + 1)
                } else {
                    described
                }
            }
            None => match self.statements {
                [only] => describe(only),
                many => format!("the {} statements", many.len()),
            },
        };
        if !hit.tables.is_empty() {
            subject.push_str(" touching ");
            subject.push_str(&hit.tables.join(", "));
        }
        subject
    }

    /// Checks that some permission of the requester's roles covers the statement entirely.
    fn permitted(&self, index: usize) -> Result<(), String> {
        let statement = &self.statements[index];
        // Who asks and what: only needed to explain a refusal, so built only then (this runs for
        // every statement of every request).
        let explain = || {
            let subject = self.subject(&Hit {
                statement: Some(index),
                ..Hit::default()
            });
            (who(self.request.requester, self.roles), subject)
        };
        let target = &self.target.name;
        let applicable: Vec<_> = self
            .policy
            .permissions()
            .iter()
            .filter(|p| self.roles.contains(&p.role) && p.targets.is_match(target))
            .collect();
        if applicable.is_empty() {
            let (who, subject) = explain();
            return Err(format!(
                "{who} has no permission on target '{target}', so {subject} may not run there"
            ));
        }
        let category = statement.category;
        let by_category: Vec<_> = applicable
            .iter()
            .filter(|p| p.categories.contains(&category))
            .collect();
        if by_category.is_empty() {
            let permitted: BTreeSet<Category> = applicable
                .iter()
                .flat_map(|p| p.categories.iter().copied())
                .collect();
            let permitted: Vec<&str> = permitted.into_iter().map(Category::as_str).collect();
            let (who, subject) = explain();
            let article = if category.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            return Err(format!(
                "{subject} is {article} {category} statement, and no permission lets {who} run \
                 {category} statements on {target} (permitted there: {})",
                permitted.join(", ")
            ));
        }
        // The classifier's verbs are already upper case with single spaces, as loading
        // normalised the policy's.
        let verbs = &statement.verbs;
        let by_verb: Vec<_> = by_category
            .iter()
            .filter(|p| match &p.verbs {
                Some(allowed) => verbs.iter().all(|v| allowed.contains(v)),
                None => true,
            })
            .collect();
        if by_verb.is_empty() {
            let allowed: BTreeSet<&str> = by_category
                .iter()
                .flat_map(|p| p.verbs.iter().flatten().map(String::as_str))
                .collect();
            let (who, subject) = explain();
            return Err(format!(
                "{subject} uses {}, and no permission lets {who} use all of them on {target} \
                 (allowed verbs: {})",
                verbs.join(", "),
                allowed.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        let tables = Self::tables(statement);
        let mut first_failure = None;
        for permission in by_verb {
            let failure = tables.iter().find_map(|table| {
                if let Some(pattern) = permission
                    .tables_deny
                    .match_table(table, self.default_schema())
                {
                    let (_, subject) = explain();
                    return Some(format!(
                        "{subject} touches {table}, which role {} may not use on {target} \
                         (tables_deny '{}')",
                        permission.role,
                        pattern.as_str()
                    ));
                }
                if permission
                    .tables_allow
                    .match_table(table, self.default_schema())
                    .is_none()
                {
                    let (_, subject) = explain();
                    return Some(format!(
                        "{subject} touches {table}, which is not among the tables role {} may \
                         use on {target} (tables_allow: {})",
                        permission.role,
                        permission.tables_allow.describe()
                    ));
                }
                None
            });
            match failure {
                None => return Ok(()),
                Some(reason) => {
                    first_failure.get_or_insert(reason);
                }
            }
        }
        Err(first_failure.unwrap_or_else(|| {
            let (_, subject) = explain();
            format!("{subject} is not permitted on {target}")
        }))
    }

    /// Whether a rule applies, and why.
    fn matches(&self, rule: &Rule) -> Option<Hit> {
        let when = &rule.when;
        if let Some(targets) = &when.targets {
            if !targets.is_match(&self.target.name) {
                return None;
            }
        }
        if let Some(roles) = &when.roles {
            if !self.roles.iter().any(|r| roles.contains(r)) {
                return None;
            }
        }
        if let Some(wanted) = when.multi_statement {
            if (self.statements.len() > 1) != wanted {
                return None;
            }
        }
        let mut hit = Hit::default();
        if let Some(limit) = when.estimated_rows_over {
            hit.estimate = Some(match self.request.estimated_rows {
                Some(rows) if rows > limit => format!("estimated {rows} rows, over {limit}"),
                Some(_) => return None,
                None => format!(
                    "the row estimate was unavailable, so the rule applies as if it were over \
                     {limit} rows"
                ),
            });
        }
        if when.has_statement_conditions() {
            let (index, tables) = self
                .statements
                .iter()
                .enumerate()
                .find_map(|(i, s)| self.statement_matches(rule, s).map(|t| (i, t)))?;
            hit.statement = Some(index);
            hit.tables = tables;
        }
        Some(hit)
    }

    /// Whether one statement meets every statement condition of the rule; if so, the tables
    /// that met table conditions.
    fn statement_matches(&self, rule: &Rule, statement: &StatementClass) -> Option<Vec<String>> {
        let when = &rule.when;
        let mut matched: Vec<String> = Vec::new();
        let mut note = |table: &TableName| {
            let name = table.to_string();
            if !matched.contains(&name) {
                matched.push(name);
            }
        };
        if let Some(categories) = &when.categories {
            if !categories.contains(&statement.category) {
                return None;
            }
        }
        if let Some(verbs) = &when.verbs {
            if !statement.verbs.iter().any(|v| verbs.contains(v)) {
                return None;
            }
        }
        if let Some(flags) = &when.flags {
            if !statement.flags.iter().any(|f| flags.contains(f)) {
                return None;
            }
        }
        if let Some(wanted) = when.missing_where {
            let missing =
                statement.has_where == Some(false) || statement.flags.contains(&Flag::MissingWhere);
            if missing != wanted {
                return None;
            }
        }
        let schema = self.default_schema();
        if let Some(patterns) = &when.tables {
            let hits: Vec<_> = Self::tables(statement)
                .into_iter()
                .filter(|t| patterns.match_table(t, schema).is_some())
                .collect();
            if hits.is_empty() {
                return None;
            }
            hits.into_iter().for_each(&mut note);
        }
        if let Some(patterns) = &when.tables_written {
            let hits: Vec<_> = statement
                .tables_written
                .iter()
                .filter(|t| patterns.match_table(t, schema).is_some())
                .collect();
            if hits.is_empty() {
                return None;
            }
            hits.into_iter().for_each(&mut note);
        }
        if let Some(wanted) = when.sensitive {
            let sensitive = &self.policy.settings().sensitive_tables;
            let hits: Vec<_> = Self::tables(statement)
                .into_iter()
                .filter(|t| sensitive.match_table(t, schema).is_some())
                .collect();
            if hits.is_empty() == wanted {
                return None;
            }
            hits.into_iter().for_each(&mut note);
        }
        Some(matched)
    }
}

/// `DELETE without WHERE`, `SELECT`.
fn describe(statement: &StatementClass) -> String {
    let verb = statement
        .verbs
        .first()
        .cloned()
        .unwrap_or_else(|| "the statement".to_string());
    if statement.has_where == Some(false) {
        format!("{verb} without WHERE")
    } else {
        verb
    }
}
