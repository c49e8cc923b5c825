//! Classification speed against a bare sqlparser parse of the same statements.
//!
//! Sample: every 8th statement of the PostgreSQL regression corpus that PostgreSQL accepts
//! (`../shared/corpus/pg_regress_labeled.jsonl`). Target: classify (and classify + decide, once a
//! policy is loaded) within 1.5x of the bare parse.
//!
//! Run: `cargo bench -p countersign-shared --bench classify`.

// Measured with the allocator the binaries use (the CLI and the services).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::PathBuf;

use countersign_shared::policy::{Identity, Policy, Principal, Request};
use countersign_shared::sql::{classify, ClassifyOptions, Dialect};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

fn sample() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/pg_regress_labeled.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "!!! corpus not found at {}: benchmarking a small built-in sample instead",
            path.display()
        );
        return vec![
            "SELECT o.id, sum(i.price) FROM orders o JOIN items i ON i.order_id = o.id WHERE o.created > now() - interval '1 day' GROUP BY o.id".into(),
            "DELETE FROM orders WHERE id = 42".into(),
            "UPDATE users SET email = lower(email) WHERE id IN (SELECT user_id FROM orders)".into(),
            "CREATE TABLE t (id int primary key, note text)".into(),
        ];
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|row| {
            row["pg_ok"].as_bool() == Some(true) && row["psql_vars"].as_bool() == Some(false)
        })
        .filter_map(|row| row["sql"].as_str().map(str::to_string))
        .step_by(8)
        .collect()
}

fn bench(c: &mut Criterion) {
    let statements = sample();
    let options = ClassifyOptions::default();
    let mut group = c.benchmark_group("pg_corpus_sample");
    group.throughput(Throughput::Elements(statements.len() as u64));
    group.bench_function("sqlparser_parse", |b| {
        b.iter(|| {
            for sql in &statements {
                let _ = black_box(Parser::parse_sql(&PostgreSqlDialect {}, black_box(sql)));
            }
        })
    });
    group.bench_function("classify", |b| {
        b.iter(|| {
            for sql in &statements {
                black_box(classify(black_box(sql), Dialect::Postgres, &options));
            }
        })
    });
    let policy = Policy::from_str(
        include_str!("../../deploy/policy.example.toml"),
        "policy.example.toml",
    )
    .expect("the example policy loads");
    let requester = Identity {
        principal: Principal::parse("console:alice").expect("principal"),
        groups: Vec::new(),
    };
    group.bench_function("classify_and_decide", |b| {
        b.iter(|| {
            for sql in &statements {
                black_box(policy.decide(&Request {
                    target: "prod",
                    requester: &requester,
                    sql: black_box(sql),
                    estimated_rows: Some(10),
                }));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
