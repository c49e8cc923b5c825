//! Tests of the policy's semantics: evaluation, approvals, masking, expectations.

use std::time::Duration;

use super::*;

const POLICY: &str = r#"
[settings]
default_approval_ttl = "4h"
max_sql_bytes = 200
sensitive_tables = ["payroll.*", "*.api_keys"]

[[targets]]
name = "prod"
driver = "postgres"
default_schema = "public"
row_limit = 1000

[[targets]]
name = "staging"
driver = "mysql"
row_limit = 5000

[roles.engineer]
members = ["console:alice", "slack-group:S0ENG"]
[roles.dba]
members = ["console:bob", "console:carol", "discord-role:777"]
[roles.security]
members = ["console:sam", "console:carol"]
[roles.bots]
members = ["service:nightly"]
[roles.nobody]
members = []

[[permissions]]
role = "engineer"
categories = ["read", "write", "ddl", "unknown", "session"]
tables_deny = ["payroll.*"]

[[permissions]]
role = "dba"
categories = ["read", "write", "ddl", "admin", "unknown", "session"]

[[permissions]]
role = "security"
targets = ["prod"]
categories = ["read"]
tables_allow = ["audit.*"]

[[permissions]]
role = "bots"
targets = ["staging"]
categories = ["read"]
verbs = ["SELECT"]

[[rules]]
name = "delete or update without where"
when = { categories = ["write"], missing_where = true }
action = "require_approval"
approval = { from = ["dba"], count = 2, mode = "any_of", ttl = "1h" }
reason = "changes every row of the table"

[[rules]]
name = "writes on prod"
when = { targets = ["prod"], categories = ["write"] }
action = "require_approval"
approval = { from = ["dba", "security"], count = 1 }
row_limit = 500

[[rules]]
name = "drops"
when = { verbs = ["drop table"] }
action = "deny"
reason = "tables are dropped by migrations"

[[rules]]
name = "payroll writes"
when = { categories = ["write"], tables = ["payroll.*"] }
action = "deny"

[[rules]]
name = "truncate"
when = { verbs = ["TRUNCATE"] }
action = "deny"

[[rules]]
name = "sensitive"
when = { sensitive = true }
action = "require_approval"
approval = { from = ["dba", "security"], count = 1, mode = "all_of", ttl = "30m" }
reason = "payroll and keys"

[[rules]]
name = "big writes"
when = { categories = ["write"], estimated_rows_over = 100 }
action = "require_approval"
approval = { from = ["dba"] }

[[rules]]
name = "staging reads"
when = { targets = ["staging"], categories = ["read"] }
action = "allow"
row_limit = 10

[[rules]]
name = "audit tables"
when = { tables = ["AUDIT.*"], roles = ["engineer"] }
action = "deny"
reason = "engineers do not read the audit trail"

[masking]
columns = ["email", "*.ssn", "users.phone", "*password*"]
"#;

fn policy() -> Policy {
    Policy::from_str(POLICY, "test.toml").unwrap_or_else(|e| panic!("test policy: {e}"))
}

fn who(principal: &str) -> Identity {
    Identity::new(Principal::parse(principal).expect("valid principal"))
}

fn decide_with(
    policy: &Policy,
    target: &str,
    user: &Identity,
    sql: &str,
    rows: Option<u64>,
) -> Decision {
    policy.decide(&Request {
        target,
        requester: user,
        sql,
        estimated_rows: rows,
    })
}

fn decide(target: &str, user: &str, sql: &str, rows: Option<u64>) -> Decision {
    decide_with(&policy(), target, &who(user), sql, rows)
}

fn assert_reason(decision: &Decision, text: &str) {
    assert!(
        decision.reasons.iter().any(|r| r.contains(text)),
        "no reason contains {text:?}: {:#?}",
        decision.reasons
    );
}

// --- decide ----------------------------------------------------------------------------------

#[test]
fn reads_within_permissions_are_allowed() {
    let d = decide(
        "prod",
        "console:alice",
        "SELECT id FROM orders WHERE id = 1",
        None,
    );
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.roles, ["engineer"]);
    assert_eq!(d.row_limit, Some(1000));
    assert_reason(
        &d,
        "SELECT on prod is allowed for console:alice (roles: engineer)",
    );
}

#[test]
fn delete_without_where_needs_two_approvals_from_dba() {
    let d = decide("staging", "console:alice", "DELETE FROM orders", Some(5));
    assert_eq!(d.outcome.kind(), OutcomeKind::NeedsApproval);
    assert_eq!(d.outcome.approvals_required(), 2);
    assert_eq!(
        d.reasons,
        [
            "DELETE without WHERE on staging needs 2 approvals from dba (rule 'delete or update \
          without where': changes every row of the table)"
        ]
    );
    let requirement = &d.outcome.requirements()[0];
    assert_eq!(requirement.from, ["dba"]);
    assert_eq!(requirement.count, 2);
    assert_eq!(requirement.mode, ApprovalMode::AnyOf);
    assert_eq!(requirement.ttl, Duration::from_secs(3600));
}

#[test]
fn every_matching_approval_rule_applies_and_the_shortest_ttl_wins() {
    let d = decide("prod", "console:alice", "UPDATE orders SET a = 1", Some(5));
    let rules: Vec<&str> = d
        .outcome
        .requirements()
        .iter()
        .map(|r| r.rule.as_str())
        .collect();
    assert_eq!(rules, ["delete or update without where", "writes on prod"]);
    assert_eq!(d.outcome.approval_ttl(), Some(Duration::from_secs(3600)));
    assert_eq!(d.reasons.len(), 2);
}

#[test]
fn any_deny_wins_and_every_deny_reason_is_listed() {
    let policy = Policy::from_str(
        &POLICY.replace("[settings]", "[settings]\nallow_multi_statement = true"),
        "multi.toml",
    )
    .expect("valid");
    let d = decide_with(
        &policy,
        "prod",
        &who("console:bob"),
        "DROP TABLE orders; TRUNCATE orders",
        None,
    );
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reasons.len(), 2, "{:#?}", d.reasons);
    assert_reason(&d, "statement 1 (DROP TABLE) on prod is denied (rule 'drops': tables are dropped by migrations)");
    assert_reason(
        &d,
        "statement 2 (TRUNCATE) on prod is denied (rule 'truncate')",
    );
}

#[test]
fn a_deny_rule_beats_an_approval_rule() {
    // The engineer permission covers ddl, the deny rule still wins.
    let d = decide("staging", "console:alice", "DROP TABLE orders", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(d.outcome.requirements().is_empty());
}

#[test]
fn unknown_target_is_denied_naming_known_targets() {
    let d = decide("qa", "console:alice", "SELECT 1", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(
        d.reasons,
        ["unknown target 'qa'; known targets: prod, staging"]
    );
    assert_eq!(d.target, None);
    assert_eq!(d.row_limit, None);
}

#[test]
fn requester_without_a_role_is_denied() {
    let d = decide("prod", "console:mallory", "SELECT 1", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(&d, "console:mallory belongs to no role in this policy");
}

#[test]
fn a_group_cannot_be_the_requester() {
    let d = decide("prod", "slack-group:S0ENG", "SELECT 1", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(
        d.reasons,
        ["slack-group:S0ENG is a group, and requests come from one person or service"]
    );
}

#[test]
fn a_group_grants_its_role() {
    let user = who("slack:U1").with_groups([Principal::parse("slack-group:S0ENG").expect("valid")]);
    let d = decide_with(&policy(), "prod", &user, "SELECT 1", None);
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.roles, ["engineer"]);
}

#[test]
fn classification_error_is_denied_with_the_classifier_message() {
    let d = decide("prod", "console:alice", "SELEC 1", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reasons.len(), 1);
    assert!(
        d.reasons[0].starts_with("the SQL could not be parsed: "),
        "{:?}",
        d.reasons
    );
    let d = decide("prod", "console:alice", "  -- nothing\n", None);
    assert_eq!(d.outcome, Outcome::Deny);
}

#[test]
fn sql_over_max_sql_bytes_is_denied() {
    let sql = format!("SELECT {}", "1 + ".repeat(100)) + "1";
    let d = decide("prod", "console:alice", &sql, None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(&d, "over the limit of 200 bytes");
}

#[test]
fn multi_statement_input_is_denied_unless_allowed() {
    let d = decide("prod", "console:alice", "SELECT 1; SELECT 2", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(&d, "the input holds 2 statements");
    let allowing = Policy::from_str(
        &POLICY.replace("[settings]", "[settings]\nallow_multi_statement = true"),
        "multi.toml",
    )
    .expect("valid");
    let d = decide_with(
        &allowing,
        "prod",
        &who("console:alice"),
        "SELECT 1; SELECT 2",
        None,
    );
    assert_eq!(d.outcome, Outcome::Allow);
}

#[test]
fn a_category_no_permission_covers_is_denied_naming_what_is_missing() {
    let d = decide("prod", "console:alice", "VACUUM orders", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(
        &d,
        "VACUUM is an admin statement, and no permission lets console:alice (roles: engineer) run \
         admin statements on prod (permitted there: read, session, write, ddl, unknown)",
    );
}

#[test]
fn no_permission_on_the_target_is_denied() {
    let d = decide("prod", "service:nightly", "SELECT 1", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(
        &d,
        "service:nightly (roles: bots) has no permission on target 'prod'",
    );
}

#[test]
fn tables_deny_and_tables_allow_are_enforced() {
    let d = decide(
        "prod",
        "console:alice",
        "SELECT * FROM payroll.salaries",
        None,
    );
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(&d, "SELECT touches payroll.salaries, which role engineer may not use on prod (tables_deny 'payroll.*')");
    let d = decide("prod", "console:sam", "SELECT * FROM orders", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(
        &d,
        "which is not among the tables role security may use on prod (tables_allow: audit.*)",
    );
    let d = decide("prod", "console:sam", "SELECT * FROM audit.log", None);
    assert_eq!(d.outcome, Outcome::Allow);
}

#[test]
fn permissions_of_several_roles_are_a_union() {
    // carol is dba and security: the dba permission covers what security's does not.
    let d = decide("prod", "console:carol", "SELECT * FROM orders", None);
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(d.roles, ["dba", "security"]);
}

#[test]
fn permission_verbs_limit_the_verbs() {
    let d = decide("staging", "service:nightly", "SELECT 1", None);
    assert_eq!(d.outcome, Outcome::Allow);
    let d = decide("staging", "service:nightly", "SHOW TABLES", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(&d, "SHOW uses SHOW, and no permission lets service:nightly (roles: bots) use all of them on staging (allowed verbs: SELECT)");
}

#[test]
fn missing_estimate_counts_as_over_the_threshold() {
    let d = decide(
        "staging",
        "console:alice",
        "UPDATE orders SET a = 1 WHERE id = 1",
        None,
    );
    assert_eq!(d.matched_rules, ["big writes"]);
    assert_reason(&d, "the row estimate was unavailable");
    let d = decide(
        "staging",
        "console:alice",
        "UPDATE orders SET a = 1 WHERE id = 1",
        Some(101),
    );
    assert_reason(&d, "estimated 101 rows, over 100");
    let d = decide(
        "staging",
        "console:alice",
        "UPDATE orders SET a = 1 WHERE id = 1",
        Some(100),
    );
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.matched_rules.is_empty());
}

#[test]
fn row_limit_is_the_target_limit_lowered_by_matching_rules() {
    let d = decide(
        "prod",
        "console:alice",
        "UPDATE orders SET a = 1 WHERE id = 1",
        Some(1),
    );
    assert_eq!(d.row_limit, Some(500));
    let d = decide("staging", "console:alice", "SELECT 1", None);
    assert_eq!(d.row_limit, Some(10));
}

#[test]
fn an_allow_rule_never_loosens_a_permission() {
    // "staging reads" allows reads on staging, but payroll is still denied to engineers.
    let d = decide(
        "staging",
        "console:alice",
        "SELECT * FROM payroll.salaries",
        None,
    );
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(d.matched_rules.contains(&"staging reads".to_string()));
}

#[test]
fn rule_roles_condition_looks_at_the_requesters_roles() {
    let d = decide("prod", "console:alice", "SELECT * FROM audit.log", None);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_reason(&d, "SELECT touching audit.log on prod is denied (rule 'audit tables': engineers do not read the audit trail)");
    let d = decide("prod", "console:bob", "SELECT * FROM audit.log", None);
    assert_eq!(d.outcome, Outcome::Allow);
}

#[test]
fn sensitive_tables_match_through_the_default_schema() {
    let d = decide("prod", "console:bob", "SELECT * FROM API_KEYS", None);
    assert_eq!(d.outcome.kind(), OutcomeKind::NeedsApproval);
    assert_reason(&d, "SELECT touching api_keys on prod needs 1 approval from each of dba and security (rule 'sensitive': payroll and keys)");
    // staging has no default schema: a bare api_keys is not known to be *.api_keys.
    let d = decide("staging", "console:bob", "SELECT * FROM api_keys", None);
    assert_eq!(d.outcome, Outcome::Allow);
}

#[test]
fn statement_conditions_must_hold_for_the_same_statement() {
    let policy = Policy::from_str(
        &POLICY.replace("[settings]", "[settings]\nallow_multi_statement = true"),
        "multi.toml",
    )
    .expect("valid");
    let d = decide_with(
        &policy,
        "prod",
        &who("console:bob"),
        "SELECT * FROM payroll.x; UPDATE orders SET a = 1 WHERE id = 1",
        Some(1),
    );
    // A write and a payroll table, but in different statements: "payroll writes" does not
    // match, while "sensitive" matches the first statement on its own.
    assert!(
        !d.matched_rules.contains(&"payroll writes".to_string()),
        "{:?}",
        d.matched_rules
    );
    assert_eq!(d.matched_rules, ["writes on prod", "sensitive"]);
    assert_reason(&d, "statement 1 (SELECT) touching payroll.x on prod");
    let d = decide_with(
        &policy,
        "prod",
        &who("console:bob"),
        "UPDATE payroll.x SET a = 1 WHERE id = 1",
        Some(1),
    );
    assert_eq!(d.outcome, Outcome::Deny);
}

#[test]
fn decision_json_has_the_documented_shape() {
    let d = decide("prod", "console:alice", "DELETE FROM orders", Some(1));
    let json = d.to_json();
    assert_eq!(json["outcome"], "needs_approval");
    assert_eq!(json["approval"]["approvals_required"], 2);
    assert_eq!(json["approval"]["ttl_seconds"], 3600);
    assert_eq!(json["approval"]["requirements"][0]["mode"], "any_of");
    assert_eq!(json["target"]["name"], "prod");
    assert_eq!(json["row_limit"], 500);
    assert_eq!(json["policy_version"].as_str().map(str::len), Some(64));
    assert_eq!(json["classification"]["category"], "write");
    assert!(json["reasons"].is_array());
    assert_eq!(json["matched_rules"][0], "delete or update without where");
    let allow = decide("prod", "console:alice", "SELECT 1", None).to_json();
    assert_eq!(allow["outcome"], "allow");
    assert!(allow["approval"].is_null());
    let deny = decide("nowhere", "console:alice", "SELECT 1", None).to_json();
    assert_eq!(deny["outcome"], "deny");
    assert!(deny["target"].is_null());
}

#[test]
fn decision_records_the_policy_version() {
    let policy = policy();
    let d = decide_with(&policy, "prod", &who("console:alice"), "SELECT 1", None);
    assert_eq!(d.policy_version, policy.version());
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decide_never_panics_on_arbitrary_text(sql in ".{0,300}", rows in proptest::option::of(any::<u64>())) {
            let policy = policy();
            for target in ["prod", "staging", "nowhere"] {
                let _ = decide_with(&policy, target, &who("console:alice"), &sql, rows);
            }
        }

        #[test]
        fn decide_never_panics_on_sql_like_text(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("SELECT"), Just("DELETE"), Just("FROM"), Just("WHERE"), Just("UPDATE"),
                    Just("SET"), Just("payroll.x"), Just("api_keys"), Just(";"), Just("("),
                    Just(")"), Just("1"), Just("="), Just("*"), Just(","), Just("WITH"),
                    Just("AS"), Just("DROP"), Just("TABLE"), Just("pg_sleep(1)"), Just("'"),
                ],
                0..40,
            ),
        ) {
            let sql = words.join(" ");
            let _ = decide("prod", "console:bob", &sql, None);
        }
    }
}

// --- approvals -------------------------------------------------------------------------------

fn requirement(from: &[&str], count: u32, mode: ApprovalMode) -> ApprovalRequirement {
    ApprovalRequirement {
        rule: "r".to_string(),
        from: from.iter().map(|s| s.to_string()).collect(),
        count,
        mode,
        ttl: Duration::from_secs(60),
        reason: String::new(),
    }
}

fn quorum(
    requirements: &[ApprovalRequirement],
    requester: &str,
    approvers: &[Identity],
) -> QuorumStatus {
    policy().check_approvals(requirements, &who(requester), approvers)
}

#[test]
fn requester_approval_never_counts() {
    let status = quorum(
        &[requirement(&["dba"], 1, ApprovalMode::AnyOf)],
        "console:bob",
        &[who("console:bob")],
    );
    assert!(!status.satisfied);
    assert_eq!(
        status.missing(),
        ["needs 1 more approval from dba (rule 'r')"]
    );
    assert_eq!(
        status.ignored[0].why,
        "the requester cannot approve their own request"
    );
}

#[test]
fn approver_without_a_required_role_does_not_count() {
    let status = quorum(
        &[requirement(&["dba"], 1, ApprovalMode::AnyOf)],
        "console:alice",
        &[who("console:sam")],
    );
    assert!(!status.satisfied);
    assert_eq!(
        status.ignored[0].why,
        "holds none of the roles asked for (dba)"
    );
}

#[test]
fn the_same_approver_counts_once() {
    let status = quorum(
        &[requirement(&["dba"], 2, ApprovalMode::AnyOf)],
        "console:alice",
        &[who("console:bob"), who("console:bob")],
    );
    assert!(!status.satisfied);
    assert_eq!(
        status.missing(),
        ["needs 1 more approval from dba (rule 'r')"]
    );
    let status = quorum(
        &[requirement(&["dba"], 2, ApprovalMode::AnyOf)],
        "console:alice",
        &[who("console:bob"), who("console:carol")],
    );
    assert!(status.satisfied);
    assert!(status.missing().is_empty());
}

#[test]
fn any_of_counts_members_of_any_listed_role() {
    let status = quorum(
        &[requirement(&["dba", "security"], 2, ApprovalMode::AnyOf)],
        "console:alice",
        &[who("console:bob"), who("console:sam")],
    );
    assert!(status.satisfied);
    assert_eq!(status.requirements[0].counted.len(), 2);
}

#[test]
fn all_of_needs_each_group() {
    let req = [requirement(&["dba", "security"], 1, ApprovalMode::AllOf)];
    let status = quorum(&req, "console:alice", &[who("console:bob")]);
    assert!(!status.satisfied);
    assert_eq!(
        status.missing(),
        ["needs 1 more approval from security (rule 'r')"]
    );
    let status = quorum(
        &req,
        "console:alice",
        &[who("console:bob"), who("console:sam")],
    );
    assert!(status.satisfied);
    let status = quorum(&req, "console:alice", &[]);
    assert_eq!(
        status.missing(),
        ["needs 1 more approval from dba and 1 more from security (rule 'r')"]
    );
}

#[test]
fn all_of_counts_a_person_with_two_roles_for_one_role_only() {
    let req = [requirement(&["dba", "security"], 1, ApprovalMode::AllOf)];
    // carol holds both roles: alone she does not satisfy both.
    let status = quorum(&req, "console:alice", &[who("console:carol")]);
    assert!(!status.satisfied);
    // carol and bob: bob is dba, so carol counts for security (found by reassignment).
    let status = quorum(
        &req,
        "console:alice",
        &[who("console:carol"), who("console:bob")],
    );
    assert!(status.satisfied, "{status:?}");
}

#[test]
fn services_and_groups_never_approve() {
    let policy = Policy::from_str(
        &POLICY.replace(
            "members = [\"service:nightly\"]",
            "members = [\"service:nightly\", \"console:bob\"]",
        ),
        "t.toml",
    )
    .expect("valid");
    let status = policy.check_approvals(
        &[requirement(&["bots"], 1, ApprovalMode::AnyOf)],
        &who("console:alice"),
        &[who("service:nightly"), who("discord-role:777")],
    );
    assert!(!status.satisfied);
    assert_eq!(status.ignored.len(), 2);
}

#[test]
fn approvals_through_a_group_count() {
    let approver =
        who("discord:123").with_groups([Principal::parse("discord-role:777").expect("valid")]);
    let status = quorum(
        &[requirement(&["dba"], 1, ApprovalMode::AnyOf)],
        "console:alice",
        &[approver],
    );
    assert!(status.satisfied);
}

#[test]
fn every_requirement_must_be_satisfied_and_one_approver_may_count_for_several() {
    let reqs = [
        requirement(&["dba"], 1, ApprovalMode::AnyOf),
        requirement(&["dba", "security"], 1, ApprovalMode::AnyOf),
        requirement(&["security"], 1, ApprovalMode::AnyOf),
    ];
    let status = quorum(&reqs, "console:alice", &[who("console:bob")]);
    assert!(!status.satisfied);
    assert_eq!(status.missing().len(), 1);
    let status = quorum(
        &reqs,
        "console:alice",
        &[who("console:bob"), who("console:sam")],
    );
    assert!(status.satisfied);
}

#[test]
fn no_requirements_are_satisfied_at_once() {
    assert!(quorum(&[], "console:alice", &[]).satisfied);
}

#[test]
fn quorum_on_a_real_decision() {
    let policy = policy();
    let alice = who("console:alice");
    let d = decide_with(&policy, "staging", &alice, "DELETE FROM orders", Some(1));
    let requirements = d.outcome.requirements();
    let one = policy.check_approvals(requirements, &alice, &[who("console:bob")]);
    assert_eq!(
        one.missing(),
        ["needs 1 more approval from dba (rule 'delete or update without where')"]
    );
    let two = policy.check_approvals(
        requirements,
        &alice,
        &[who("console:bob"), who("console:carol")],
    );
    assert!(two.satisfied);
}

#[test]
fn approvals_needed_counts_what_satisfies_every_requirement() {
    let any = ApprovalMode::AnyOf;
    let all = ApprovalMode::AllOf;
    assert_eq!(approvals_needed(&[]), 0);
    assert_eq!(approvals_needed(&[requirement(&["dba"], 2, any)]), 2);
    assert_eq!(
        approvals_needed(&[
            requirement(&["dba"], 2, any),
            requirement(&["dba", "sec"], 1, any)
        ]),
        2
    );
    assert_eq!(
        approvals_needed(&[requirement(&["dba"], 1, any), requirement(&["sec"], 1, any)]),
        2
    );
    assert_eq!(approvals_needed(&[requirement(&["dba", "sec"], 2, all)]), 4);
    assert_eq!(
        approvals_needed(&[
            requirement(&["dba", "sec"], 1, all),
            requirement(&["dba"], 1, any)
        ]),
        2
    );
}

// --- masking ---------------------------------------------------------------------------------

#[test]
fn masks_columns_by_name_and_by_table_qualified_pattern() {
    let policy = policy();
    assert!(policy.masks_column(Some("users"), "email"));
    assert!(policy.masks_column(Some("public.users"), "EMAIL"));
    assert!(policy.masks_column(Some("people"), "ssn"));
    assert!(policy.masks_column(Some("users"), "phone"));
    assert!(policy.masks_column(Some("public.users"), "phone"));
    assert!(!policy.masks_column(Some("orders"), "phone"));
    assert!(policy.masks_column(Some("accounts"), "password_hash"));
    assert!(!policy.masks_column(Some("orders"), "total"));
}

#[test]
fn a_column_of_unknown_table_is_masked_when_any_pattern_could_match() {
    let policy = policy();
    assert!(policy.masks_column(None, "ssn"));
    assert!(policy.masks_column(None, "phone"));
    assert!(!policy.masks_column(None, "total"));
}

// --- expectations ------------------------------------------------------------------------------

fn expectations(cases: &str) -> Expectations {
    Expectations::from_str(
        &format!("policy = \"policy.toml\"\n{cases}"),
        "dir/tests.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn expectations_resolve_the_policy_next_to_the_file() {
    let e = expectations("");
    assert_eq!(e.policy, std::path::Path::new("dir/policy.toml"));
}

#[test]
fn failed_case_renders_expected_and_got_with_reasons() {
    let e = expectations(
        "[[case]]\nname = \"x\"\ntarget = \"prod\"\nuser = \"console:alice\"\n\
         sql = \"SELECT 1\"\nexpect = \"needs_approval\"\napprovals = 2\n",
    );
    let report = e.run(&policy());
    assert_eq!((report.passed(), report.failed()), (0, 1));
    let failure = report.results[0].failure.as_deref().expect("failed");
    assert!(
        failure.starts_with("case 'x': expected needs_approval (2 approvals), got allow\n    reason: SELECT on prod is allowed"),
        "{failure}"
    );
}

#[test]
fn approvals_count_mismatch_is_a_failure() {
    let e = expectations(
        "[[case]]\nname = \"x\"\ntarget = \"staging\"\nuser = \"console:alice\"\n\
         sql = \"DELETE FROM t\"\nestimated_rows = 1\nexpect = \"needs_approval\"\napprovals = 1\n",
    );
    let failure = e.run(&policy()).results[0].failure.clone().expect("failed");
    assert!(
        failure.starts_with(
            "case 'x': expected needs_approval (1 approval), got needs_approval (2 approvals)"
        ),
        "{failure}"
    );
}

#[test]
fn reason_and_row_limit_expectations_are_checked() {
    let e = expectations(
        "[[case]]\nname = \"ok\"\ntarget = \"staging\"\nuser = \"console:alice\"\nsql = \"SELECT 1\"\n\
         expect = \"allow\"\nrow_limit = 10\nreason_contains = \"is allowed\"\n\
         [[case]]\nname = \"bad\"\ntarget = \"staging\"\nuser = \"console:alice\"\nsql = \"SELECT 1\"\n\
         expect = \"allow\"\nrow_limit = 11\nreason_contains = \"nope\"\n",
    );
    let report = e.run(&policy());
    assert!(report.results[0].passed());
    let failure = report.results[1].failure.clone().expect("failed");
    assert!(
        failure.contains("expected a reason containing 'nope'"),
        "{failure}"
    );
    assert!(
        failure.contains("expected row limit 11, got 10"),
        "{failure}"
    );
}

#[test]
fn misspelled_expected_outcome_is_a_load_error() {
    let error = Expectations::from_str(
        "policy = \"p.toml\"\n[[case]]\nname = \"x\"\ntarget = \"prod\"\nuser = \"console:a\"\nsql = \"SELECT 1\"\nexpect = \"needs-approval\"\n",
        "t.toml",
    )
    .expect_err("bad outcome")
    .to_string();
    assert!(
        error.starts_with("t.toml:7:10: unknown outcome 'needs-approval'"),
        "{error}"
    );
    assert!(error.contains("did you mean 'needs_approval'?"), "{error}");
}

#[test]
fn unknown_case_key_is_a_load_error() {
    let error = Expectations::from_str(
        "policy = \"p.toml\"\n[[case]]\nname = \"x\"\ntarget = \"prod\"\nuser = \"console:a\"\nsql = \"SELECT 1\"\nexpect = \"allow\"\nreason = \"x\"\n",
        "t.toml",
    )
    .expect_err("unknown key")
    .to_string();
    assert!(
        error.starts_with("t.toml:8:1: unknown field `reason`"),
        "{error}"
    );
}

#[test]
fn read_only_functions_keep_reads_that_call_them_reads_and_bad_names_are_refused() {
    let vouched = Policy::from_str(
        &POLICY.replace(
            "[settings]",
            "[settings]\nread_only_functions = [\"app.fmt\", \"PLAIN_FN\"]",
        ),
        "functions.toml",
    )
    .expect("policy loads");
    assert!(vouched
        .classify_options()
        .pure_functions
        .contains("plain_fn"));
    let classification = crate::sql::classify(
        "SELECT app.fmt(1), plain_fn(2)",
        crate::sql::Dialect::Postgres,
        vouched.classify_options(),
    );
    assert!(classification.is_read(), "{classification:?}");

    let error = Policy::from_str(
        &POLICY.replace("[settings]", "[settings]\nread_only_functions = [\"f(x)\"]"),
        "functions.toml",
    )
    .expect_err("a call is not a name");
    let message = error.to_string();
    assert!(message.starts_with("functions.toml:3:24: "), "{message}");
    assert!(message.contains("not a function name"), "{message}");
}
