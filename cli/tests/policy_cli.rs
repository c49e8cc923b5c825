//! `countersign policy check` and `countersign policy test`, run as a user would run them, on the
//! example policy in `deploy/`.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{countersign, stdout};

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn check(extra: &[&str]) -> Output {
    let policy = deploy("policy.example.toml");
    let policy = policy.to_str().expect("utf-8 path");
    let mut args = vec!["policy", "check", "--policy", policy];
    args.extend_from_slice(extra);
    countersign(&args, None)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A file in the temporary directory, unique to this test process, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("countersign-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temporary file is written");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn an_allowed_read_exits_0_and_explains_itself() {
    let out = check(&[
        "--target",
        "prod",
        "--user",
        "console:alice",
        "SELECT id FROM orders WHERE id = 1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("outcome: allow\n"), "{text}");
    assert!(
        text.contains("  statement 1: read\n    verbs: SELECT\n    tables read: orders"),
        "{text}"
    );
    assert!(text.contains("policy: "), "{text}");
    assert!(text.contains("(version "), "{text}");
}

#[test]
fn a_delete_without_where_exits_1_with_its_requirements() {
    let out = check(&[
        "--target",
        "prod",
        "--user",
        "console:alice",
        "DELETE FROM orders",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("outcome: needs approval\n"), "{text}");
    assert!(
        text.contains("  - DELETE without WHERE on prod needs 2 approvals from dba (rule 'delete or update without where': changes every row of the table)"),
        "{text}"
    );
    assert!(text.contains("approvals: 2 needed, valid for 1h"), "{text}");
    assert!(text.contains("flags: missing_where"), "{text}");
}

#[test]
fn a_privilege_change_exits_2() {
    let out = check(&[
        "--target",
        "prod",
        "--user",
        "console:bob",
        "GRANT SELECT ON orders TO intern",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("outcome: deny\n"));
}

#[test]
fn sql_is_read_from_stdin_when_absent_or_dash() {
    let policy = deploy("policy.example.toml");
    let policy = policy.to_str().expect("utf-8 path");
    for last in [None, Some("-")] {
        let mut args = vec![
            "policy",
            "check",
            "--policy",
            policy,
            "--target",
            "prod",
            "--user",
            "console:alice",
        ];
        args.extend(last);
        let out = countersign(&args, Some("SELECT 1"));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

#[test]
fn json_output_has_the_decision_shape() {
    let out = check(&[
        "--target",
        "prod",
        "--user",
        "slack:U024BE7LH",
        "--group",
        "slack-group:S0614TZR7",
        "--estimated-rows",
        "5",
        "--format",
        "json",
        "UPDATE orders SET status = 'shipped' WHERE id = 42",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["outcome"], "needs_approval");
    assert_eq!(json["roles"][0], "engineer");
    assert_eq!(json["approval"]["approvals_required"], 1);
    assert_eq!(json["approval"]["requirements"][0]["rule"], "writes");
    assert_eq!(json["approval"]["requirements"][0]["from"][1], "oncall");
    assert_eq!(json["target"]["name"], "prod");
    assert_eq!(json["row_limit"], 1000);
    assert_eq!(
        json["classification"]["statements"][0]["verbs"][0],
        "UPDATE"
    );
    assert_eq!(json["policy_version"].as_str().map(str::len), Some(64));
    assert!(json["reasons"][0]
        .as_str()
        .is_some_and(|r| r.contains("needs 1 approval from dba or oncall")));
}

#[test]
fn usage_errors_exit_3() {
    let out = check(&["--target", "prod", "--user", "alice", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("is not a principal"),
        "{}",
        stderr(&out)
    );
    let out = check(&["--user", "console:alice", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(3));
    let out = check(&[
        "--target",
        "prod",
        "--user",
        "console:alice",
        "--format",
        "yaml",
        "SELECT 1",
    ]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_missing_policy_file_exits_4() {
    let out = countersign(
        &[
            "policy",
            "check",
            "--policy",
            "/nonexistent/policy.toml",
            "--target",
            "prod",
            "--user",
            "console:alice",
            "SELECT 1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("/nonexistent/policy.toml: cannot read the file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_invalid_policy_exits_4_with_location_and_hint() {
    let file = TempFile::new(
        "invalid-policy.toml",
        "[[targets]]\nname = \"prod\"\ndriver = \"postgres\"\n\n[roles.dba]\nmembers = [\"console:bob\"]\n\n[[permissions]]\nrole = \"dbas\"\ncategories = [\"read\"]\n",
    );
    let out = countersign(
        &[
            "policy",
            "check",
            "--policy",
            file.path(),
            "--target",
            "prod",
            "--user",
            "console:bob",
            "SELECT 1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:9:8: unknown role 'dbas'", file.path())),
        "{err}"
    );
    assert!(
        err.contains("hint: did you mean 'dba'? defined roles: dba"),
        "{err}"
    );
}

#[test]
fn the_example_expectations_pass() {
    let tests = deploy("policy.example.tests.toml");
    let out = countersign(
        &["policy", "test", tests.to_str().expect("utf-8 path")],
        None,
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("  ok      engineers read orders without review\n"),
        "{text}"
    );
    let summary = text.lines().last().unwrap_or_default();
    let passed: usize = summary
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad summary line: {summary}"));
    assert!(passed >= 15, "{summary}");
}

#[test]
fn a_failing_expectation_exits_1_and_shows_the_diff() {
    let policy = deploy("policy.example.toml");
    let file = TempFile::new(
        "failing.tests.toml",
        &format!(
            "policy = '{}'\n\n[[case]]\nname = \"reads need two approvals\"\ntarget = \"prod\"\nuser = \"console:alice\"\nsql = \"SELECT 1\"\nexpect = \"needs_approval\"\napprovals = 2\n\n[[case]]\nname = \"reads are allowed\"\ntarget = \"prod\"\nuser = \"console:alice\"\nsql = \"SELECT 1\"\nexpect = \"allow\"\n",
            policy.display()
        ),
    );
    let out = countersign(&["policy", "test", file.path()], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("  FAILED  reads need two approvals\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "case 'reads need two approvals': expected needs_approval (2 approvals), got allow"
        ),
        "{text}"
    );
    assert!(
        text.contains("reason: SELECT on prod is allowed for console:alice"),
        "{text}"
    );
    assert!(text.contains("  ok      reads are allowed\n"), "{text}");
    assert!(text.ends_with("1 passed, 1 failed\n"), "{text}");
}

#[test]
fn an_invalid_expectations_file_exits_4() {
    let file = TempFile::new(
        "invalid.tests.toml",
        "policy = \"policy.toml\"\n[[case]]\nnam = \"x\"\n",
    );
    let out = countersign(&["policy", "test", file.path()], None);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3:1: unknown field `nam`", file.path())),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `name`?"), "{err}");
}

#[test]
fn policy_test_requires_a_file() {
    let out = countersign(&["policy", "test"], None);
    assert_eq!(out.status.code(), Some(3));
}
