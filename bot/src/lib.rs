//! The Countersign bot: chat adapters (Slack, Discord, local console), command parsing, the
//! approval flow and job signing. It holds the signing key and chat tokens, never database
//! credentials.
//!
//! Layout:
//! - [`command`]: what people type after `/query`, parsed the same for every chat adapter.
//!
//! Still to come (issue 4): the approval flow on the control store, the Slack adapter, the
//! automation endpoint, health and metrics.
#![forbid(unsafe_code)]

pub mod command;

pub use countersign_shared as shared;
