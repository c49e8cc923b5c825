//! The classify and classify + decide overheads as ratios to a bare sqlparser parse, measured
//! in interleaved rounds so that a noisy machine slows all three alike.
//!
//! Run: `cargo bench -p countersign-shared --bench classify_ratio`. Prints the median time of
//! each workload over the PostgreSQL corpus sample and the median of the per-round ratios.
//! Target: classify + decide at most 1.5x the bare parse.

mod common;

// Measured with the allocator the binaries use (the CLI and the services).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use countersign_shared::sql::ClassifyOptions;

const ROUNDS: usize = 31;

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let statements = common::sample();
    let options = ClassifyOptions::default();
    let policy = common::example_policy();
    let requester = common::requester();
    let parse = || common::parse_all(&statements);
    let classify_all = || common::classify_all(&statements, &options);
    let decide_all = || common::decide_all(&statements, &policy, &requester);
    // For profiling one workload alone (e.g. under callgrind): CLASSIFY_RATIO_ONLY=decide.
    if let Ok(only) = std::env::var("CLASSIFY_RATIO_ONLY") {
        match only.as_str() {
            "parse" => parse(),
            "classify" => classify_all(),
            "none" => {}
            _ => decide_all(),
        }
        return;
    }
    // Warm up caches and lazily built tables.
    parse();
    classify_all();
    decide_all();
    let (mut p, mut c, mut d, mut rc, mut rd) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let tp = timed(parse).as_secs_f64();
        let tc = timed(classify_all).as_secs_f64();
        let td = timed(decide_all).as_secs_f64();
        p.push(tp);
        c.push(tc);
        d.push(td);
        rc.push(tc / tp);
        rd.push(td / tp);
    }
    let n = statements.len() as f64;
    let per_second = |t: f64| n / t;
    println!(
        "statements: {} (every 8th valid statement of the PostgreSQL corpus)",
        n
    );
    for (name, times) in [
        ("sqlparser parse", &p),
        ("classify", &c),
        ("classify + decide", &d),
    ] {
        let t = median(times.clone());
        println!(
            "{name:>18}: {:7.2} ms per pass, {:9.0} statements/s",
            t * 1e3,
            per_second(t)
        );
    }
    println!(
        "classify / parse:          {:.2}x (median of {ROUNDS} interleaved rounds)",
        median(rc)
    );
    println!(
        "classify + decide / parse: {:.2}x (target: at most 1.5x)",
        median(rd)
    );
}
