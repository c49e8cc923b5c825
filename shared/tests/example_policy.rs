//! The example policy in `deploy/` loads and passes its own expectations.

use std::path::PathBuf;

use countersign_shared::policy::{run_file, Policy};

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

#[test]
fn example_policy_loads() {
    let policy = Policy::load(&deploy("policy.example.toml"))
        .unwrap_or_else(|e| panic!("the example policy does not load:\n{e}"));
    let names: Vec<&str> = policy.targets().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["prod", "analytics", "demo"]);
}

#[test]
fn example_policy_passes_its_expectations() {
    let report = run_file(&deploy("policy.example.tests.toml"))
        .unwrap_or_else(|e| panic!("the example expectations do not load:\n{e}"));
    assert!(
        report.results.len() >= 15,
        "too few cases: {}",
        report.results.len()
    );
    let failures: Vec<&str> = report
        .results
        .iter()
        .filter_map(|r| r.failure.as_deref())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        report.results.len(),
        failures.join("\n")
    );
}
