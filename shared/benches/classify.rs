//! Classification speed against a bare sqlparser parse of the same statements.
//!
//! Sample: every 8th statement of the PostgreSQL regression corpus that PostgreSQL accepts
//! (`../shared/corpus/pg_regress_labeled.jsonl`). Target: classify (and classify + decide, once a
//! policy is loaded) within 1.5x of the bare parse.
//!
//! Run: `cargo bench -p countersign-shared --bench classify`.

mod common;

// Measured with the allocator the binaries use (the CLI and the services).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use countersign_shared::policy::Request;
use countersign_shared::sql::{classify, ClassifyOptions, Dialect};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

fn bench(c: &mut Criterion) {
    let statements = common::sample();
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
    let policy = common::example_policy();
    let requester = common::requester();
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
