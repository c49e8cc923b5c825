//! Classification speed against a bare sqlparser parse of the same statements.
//!
//! Sample: every 8th statement of the PostgreSQL regression corpus that PostgreSQL accepts
//! (`../shared/corpus/pg_regress_labeled.jsonl`). Target: classify + decide (against the example
//! policy) within 1.5x of the bare parse.
//!
//! Run: `cargo bench -p countersign-shared --bench classify`.

mod common;

// Measured with the allocator the binaries use (the CLI and the services).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use countersign_shared::sql::ClassifyOptions;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let statements = common::sample();
    let options = ClassifyOptions::default();
    let policy = common::example_policy();
    let requester = common::requester();
    let mut group = c.benchmark_group("pg_corpus_sample");
    group.throughput(Throughput::Elements(statements.len() as u64));
    group.bench_function("sqlparser_parse", |b| {
        b.iter(|| common::parse_all(&statements))
    });
    group.bench_function("classify", |b| {
        b.iter(|| common::classify_all(&statements, &options))
    });
    group.bench_function("classify_and_decide", |b| {
        b.iter(|| common::decide_all(&statements, &policy, &requester))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
