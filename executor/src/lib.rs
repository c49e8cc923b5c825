//! Countersign executor: the only component that holds database credentials.
//!
//! It consumes signed jobs for one target database from Redis, trusts none of them until it has
//! checked them, claims each once in the control database's outbox, runs it under guards, and
//! records and reports the outcome (DESIGN.md sections 2 to 4 and 9).
//!
//! Layout:
//! - [`runner`]: the job loop: verify, re-classify, plan masking, claim, run, audit, post, ack.
//! - [`execute`]: running one statement on PostgreSQL, MySQL/MariaDB or SQLite under guards.
//! - [`reconcile`] (private): re-publishing unclaimed jobs, deciding jobs whose executor died,
//!   re-posting summaries that never reached chat.
//! - [`preflight`]: row estimates for the bot, without running anything.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`; [`metrics`]: what `/metrics` shows.
//! - [`config`]: settings and timings.
//!
//! The binary (`src/main.rs`) reads settings from flags and the environment, connects, and runs
//! until SIGTERM or Ctrl-C, then drains.
#![forbid(unsafe_code)]

pub mod config;
pub mod execute;
pub mod http;
pub mod metrics;
pub mod preflight;
mod reconcile;
pub mod runner;

pub use config::ExecutorConfig;
pub use runner::{Executor, Services, SetupError};
