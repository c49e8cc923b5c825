//! Policy tests: expectations kept next to a policy (`policy.tests.toml`), each a request and
//! the outcome it must get, so a team can test a policy change in CI before it ships.
//!
//! ```toml
//! policy = "policy.toml"          # relative to this file
//!
//! [[case]]
//! name = "engineers read orders without review"
//! target = "prod"
//! user = "console:alice"
//! groups = []                     # optional: the user's chat groups
//! sql = "SELECT id FROM orders WHERE id = 42"
//! expect = "allow"                # allow | needs_approval | deny
//! approvals = 2                   # optional: approvals required (Outcome::approvals_required)
//! reason_contains = "..."         # optional: some reason contains this text
//! estimated_rows = 10             # optional: the preflight's row estimate
//! row_limit = 100                 # optional: the decision's row limit
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::decide::{Decision, OutcomeKind, Request};
use super::error::{nearest, PolicyError};
use super::file::Str;
use super::load::{read_text, Context};
use super::principal::Identity;
use super::Policy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectationsFile {
    policy: String,
    #[serde(default, rename = "case")]
    cases: Vec<CaseFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    name: Str,
    target: String,
    user: Str,
    #[serde(default)]
    groups: Vec<Str>,
    sql: String,
    expect: Str,
    approvals: Option<toml::Spanned<u64>>,
    reason_contains: Option<String>,
    estimated_rows: Option<u64>,
    row_limit: Option<u64>,
}

/// A loaded expectations file.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Where the expectations came from.
    pub source: String,
    /// The policy they test, resolved against the expectations file's directory.
    pub policy: PathBuf,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// One request and what the policy must decide for it.
#[derive(Debug, Clone)]
pub struct Case {
    /// Names the case in reports.
    pub name: String,
    /// The target requested.
    pub target: String,
    /// The requester and their groups.
    pub requester: Identity,
    /// The SQL requested.
    pub sql: String,
    /// The outcome required.
    pub expect: OutcomeKind,
    /// When set, the approvals required ([`super::Outcome::approvals_required`]).
    pub approvals: Option<u64>,
    /// When set, some reason must contain this text.
    pub reason_contains: Option<String>,
    /// The row estimate passed with the request.
    pub estimated_rows: Option<u64>,
    /// When set, the decision's row limit.
    pub row_limit: Option<u64>,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// What went wrong, as a readable diff; `None` when the case passed.
    pub failure: Option<String>,
    /// The decision the policy made.
    pub decision: Decision,
}

impl CaseResult {
    /// True when the decision met every expectation.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// The results of one expectations file.
#[derive(Debug, Clone)]
pub struct ExpectationReport {
    /// The expectations file.
    pub source: String,
    /// One result per case, in file order.
    pub results: Vec<CaseResult>,
}

impl ExpectationReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

impl Expectations {
    /// Reads and checks an expectations file.
    pub fn load(path: &Path) -> Result<Expectations, PolicyError> {
        let text = read_text(path)?;
        Expectations::from_str(&text, &path.display().to_string())
    }

    /// Checks expectations text. `source_name` is its path: `policy` is resolved against its
    /// directory.
    pub fn from_str(text: &str, source_name: &str) -> Result<Expectations, PolicyError> {
        let cx = Context {
            source: source_name,
            text,
        };
        let file: ExpectationsFile =
            toml::from_str(text).map_err(|e| PolicyError::from_toml(source_name, text, &e))?;
        let base = Path::new(source_name).parent().unwrap_or(Path::new(""));
        let mut cases: Vec<Case> = Vec::with_capacity(file.cases.len());
        for case in file.cases {
            let name = case.name.get_ref().trim().to_string();
            if name.is_empty() || cases.iter().any(|c| c.name == name) {
                return Err(cx.at(
                    case.name.span(),
                    format!("case name '{name}' is empty or already used"),
                    "give every case its own name: reports quote it".to_string(),
                ));
            }
            let valid = ["allow", "needs_approval", "deny"];
            let expect = OutcomeKind::parse(case.expect.get_ref()).ok_or_else(|| {
                let hint = match nearest(case.expect.get_ref(), valid) {
                    Some(near) => {
                        format!("did you mean '{near}'? expect one of: allow, needs_approval, deny")
                    }
                    None => "expect one of: allow, needs_approval, deny".to_string(),
                };
                cx.at(
                    case.expect.span(),
                    format!("unknown outcome '{}'", case.expect.get_ref()),
                    hint,
                )
            })?;
            let approvals = match case.approvals {
                Some(n) if expect != OutcomeKind::NeedsApproval || *n.get_ref() == 0 => {
                    return Err(cx.at(
                        n.span(),
                        "approvals applies only to expect = \"needs_approval\", and must be at least 1",
                        "remove approvals, or expect needs_approval".to_string(),
                    ))
                }
                Some(n) => Some(*n.get_ref()),
                None => None,
            };
            let principal = cx.principal(&case.user)?;
            let groups = case
                .groups
                .iter()
                .map(|g| cx.principal(g))
                .collect::<Result<Vec<_>, _>>()?;
            cases.push(Case {
                name,
                target: case.target,
                requester: Identity::new(principal).with_groups(groups),
                sql: case.sql,
                expect,
                approvals,
                reason_contains: case.reason_contains,
                estimated_rows: case.estimated_rows,
                row_limit: case.row_limit,
            });
        }
        Ok(Expectations {
            source: source_name.to_string(),
            policy: base.join(file.policy),
            cases,
        })
    }

    /// Decides every case with `policy` and compares. Pure.
    pub fn run(&self, policy: &Policy) -> ExpectationReport {
        ExpectationReport {
            source: self.source.clone(),
            results: self
                .cases
                .iter()
                .map(|case| run_case(policy, case))
                .collect(),
        }
    }
}

/// Loads an expectations file and the policy it names, and runs it.
pub fn run_file(path: &Path) -> Result<ExpectationReport, PolicyError> {
    let expectations = Expectations::load(path)?;
    let policy = Policy::load(&expectations.policy)?;
    Ok(expectations.run(&policy))
}

fn run_case(policy: &Policy, case: &Case) -> CaseResult {
    let decision = policy.decide(&Request {
        target: &case.target,
        requester: &case.requester,
        sql: &case.sql,
        estimated_rows: case.estimated_rows,
    });
    let got_kind = decision.outcome.kind();
    let got_approvals = decision.outcome.approvals_required();
    let mut problems = Vec::new();
    let approvals_differ = case.approvals.is_some_and(|n| n != got_approvals);
    if got_kind != case.expect || approvals_differ {
        let expected = describe(case.expect, case.approvals);
        let got = describe(
            got_kind,
            (got_kind == OutcomeKind::NeedsApproval).then_some(got_approvals),
        );
        problems.push(format!("expected {expected}, got {got}"));
    }
    if let Some(text) = &case.reason_contains {
        if !decision.reasons.iter().any(|r| r.contains(text.as_str())) {
            problems.push(format!("expected a reason containing '{text}'"));
        }
    }
    if let Some(limit) = case.row_limit {
        if decision.row_limit != Some(limit) {
            let got = decision
                .row_limit
                .map_or("none".to_string(), |l| l.to_string());
            problems.push(format!("expected row limit {limit}, got {got}"));
        }
    }
    let failure = (!problems.is_empty()).then(|| {
        let mut text = format!("case '{}': {}", case.name, problems.join("; "));
        for reason in &decision.reasons {
            text.push_str("\n    reason: ");
            text.push_str(reason);
        }
        if !decision.matched_rules.is_empty() {
            text.push_str("\n    matched rules: ");
            text.push_str(&decision.matched_rules.join(", "));
        }
        text
    });
    CaseResult {
        name: case.name.clone(),
        failure,
        decision,
    }
}

/// `needs_approval (2 approvals)`, `allow`.
fn describe(kind: OutcomeKind, approvals: Option<u64>) -> String {
    match approvals {
        Some(1) => format!("{} (1 approval)", kind.as_str()),
        Some(n) => format!("{} ({n} approvals)", kind.as_str()),
        None => kind.as_str().to_string(),
    }
}
