//! The Countersign bot: chat adapters (Slack, Discord, local console), command parsing, the
//! approval flow and job signing.
//!
//! Not built yet: the bot arrives with its own issue. Today it only links the shared core, so
//! the workspace has the shape the design describes. It will hold the signing key and chat
//! tokens, never database credentials.
#![forbid(unsafe_code)]

pub use countersign_shared as shared;
