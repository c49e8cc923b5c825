//! The Countersign executor: the only component with database credentials. It verifies signed
//! jobs, re-classifies and re-checks their SQL, runs them under guards and audits the outcome.
//!
//! Not built yet: the executor arrives with its own issue. Today it only links the shared core,
//! so the workspace has the shape the design describes.
#![forbid(unsafe_code)]

pub use countersign_shared as shared;
