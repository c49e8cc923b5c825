//! The core both Countersign services share.
//!
//! Pure code, no I/O: what the bot decides and the executor re-checks must come out the same on
//! both sides, so it lives here once.
//!
//! Layout:
//! - [`sql`]: classifies SQL text per statement (category, verbs, tables, flags), fail-closed.
//! - [`audit`]: audit records and their hash chain: sealing, and verification that names any
//!   edited, removed or reordered record.
//! - [`job`]: signed job envelopes between the bot and the executor (Ed25519), and the checks
//!   the executor makes before running one.
//! - [`masking`]: which result columns of a statement the executor must mask, following the
//!   data through aliases, expressions, subqueries and CTEs; refuses what it cannot follow.
//! - [`policy`]: the policy file (targets, identities, roles, rules, masking), loading with
//!   located errors, and evaluation of a request to allow, needs-approval or deny.
//! - [`summary`]: result summaries (outcome, rows, the first rows masked, the audit line) and
//!   their plain-text rendering for a chat thread.
#![forbid(unsafe_code)]

pub mod audit;
pub mod job;
pub mod masking;
pub mod policy;
pub mod sql;
pub mod summary;
