//! The local console: a third chat adapter, in the browser, for trying Countersign without a
//! chat workspace (`countersign dev` serves it).
//!
//! It runs the same flow as Slack and Discord: commands and reactions become the same
//! [`crate::chat::Inbound`] events, stored in the inbox and handled by [`crate::flow`]; cards,
//! notes, private answers and the executors' results come back through [`ConsoleAdapter`].
//!
//! - [`hub`]: the workspace (people, channels, messages, threads, reactions), saved to a file.
//! - [`adapter`]: [`ConsoleAdapter`], the [`crate::chat::ChatAdapter`] and executor poster.
//! - [`web`]: the page and its JSON API.

pub mod adapter;
pub mod hub;
pub mod web;

pub use adapter::ConsoleAdapter;
pub use hub::{ConsoleHub, ConsoleUser};
pub use web::{ConsoleTarget, Workspace};
