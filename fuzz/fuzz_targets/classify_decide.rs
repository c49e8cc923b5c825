//! Fuzzes classification and the policy decision with arbitrary SQL text, in every dialect.
//!
//! Run (stable toolchain): `cargo fuzz run --sanitizer none classify_decide -- -max_total_time=600`
//! from the repository root. Besides "no panic, no stack overflow, no hang", it checks the
//! fail-closed invariants: a refusal is `unknown`, a read writes nothing, and a decision to
//! allow never comes with a classification error.
#![no_main]

use std::sync::LazyLock;

use countersign_shared::policy::{Identity, Outcome, Policy, Principal, Request};
use countersign_shared::sql::{classify, Category};
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::from_str(
        include_str!("../../deploy/policy.example.toml"),
        "policy.example.toml",
    )
    .expect("the example policy loads")
});

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let policy = &*POLICY;
    for target in policy.targets() {
        let options = policy.classify_options();
        let c = classify(sql, target.dialect, options);
        if !c.is_ok() {
            assert_eq!(c.category, Category::Unknown);
            assert!(c.statements.is_empty());
        }
        if c.category == Category::Read {
            assert!(c.statements.iter().all(|s| s.tables_written.is_empty()));
        }
        let requester = Identity {
            principal: Principal::parse("console:alice").expect("principal"),
            groups: Vec::new(),
        };
        let decision = policy.decide(&Request {
            target: &target.name,
            requester: &requester,
            sql,
            estimated_rows: Some(1),
        });
        if decision.outcome == Outcome::Allow {
            assert!(decision.classification.is_ok());
        }
    }
});
