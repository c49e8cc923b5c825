//! Posting into a request's chat thread.
//!
//! The executor reports results, refusals and audit lines through [`ChatPoster`]; the Slack,
//! Discord and console adapters implement it. [`RecordingPoster`] keeps what was posted, for
//! tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use countersign_shared::summary::ResultSummary;
use serde::{Deserialize, Serialize};

/// Where a request's conversation is: a thread on one chat platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplyTo {
    /// `slack`, `discord` or `console`.
    pub platform: String,
    /// The channel (Slack channel id, Discord channel id, console channel name).
    pub channel: String,
    /// The thread: Slack's root message `ts`, Discord's thread channel id, the console's root
    /// message id.
    pub thread: String,
}

/// One message for a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMessage {
    /// Plain text (with ``` fences for code and tables), readable on every platform.
    pub text: String,
    /// The structured summary behind `text`, for adapters that render their own layout.
    pub summary: Option<ResultSummary>,
}

impl ThreadMessage {
    /// A plain note.
    pub fn note(text: impl Into<String>) -> ThreadMessage {
        ThreadMessage {
            text: text.into(),
            summary: None,
        }
    }

    /// A result summary, rendered as text too.
    pub fn summary(summary: ResultSummary) -> ThreadMessage {
        ThreadMessage {
            text: summary.render_text(),
            summary: Some(summary),
        }
    }
}

/// Why a post failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The platform is not one this poster serves.
    #[error("no chat adapter for platform `{0}`")]
    UnknownPlatform(String),
    /// The platform refused or could not be reached; worth retrying later.
    #[error("posting to chat failed: {0}")]
    Failed(String),
}

/// A future returned by [`ChatPoster::post`].
pub type PostFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ChatError>> + Send + 'a>>;

/// Posts into threads.
pub trait ChatPoster: Send + Sync {
    /// Posts one message into the thread.
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a>;
}

/// A poster that keeps every message, for tests (and the logs-only mode).
#[derive(Clone, Default)]
pub struct RecordingPoster {
    posted: Arc<Mutex<Vec<(ReplyTo, ThreadMessage)>>>,
}

impl RecordingPoster {
    /// An empty recorder.
    pub fn new() -> RecordingPoster {
        RecordingPoster::default()
    }

    /// Everything posted so far, in order.
    pub fn posted(&self) -> Vec<(ReplyTo, ThreadMessage)> {
        self.posted.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The texts posted into one thread, in order.
    pub fn thread(&self, thread: &str) -> Vec<String> {
        self.posted()
            .into_iter()
            .filter(|(to, _)| to.thread == thread)
            .map(|(_, message)| message.text)
            .collect()
    }
}

impl ChatPoster for RecordingPoster {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        Box::pin(async move {
            if let Ok(mut posted) = self.posted.lock() {
                posted.push((to.clone(), message.clone()));
            }
            Ok(())
        })
    }
}

/// A poster that appends each message as one JSON line (`{"to": ..., "message": ...}`) to a
/// file: for running an executor without a chat platform, and for tests that watch an executor
/// in another process.
pub struct JsonLinesPoster {
    file: Mutex<std::fs::File>,
}

impl JsonLinesPoster {
    /// Opens (creating, appending) the file.
    pub fn open(path: &std::path::Path) -> std::io::Result<JsonLinesPoster> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JsonLinesPoster {
            file: Mutex::new(file),
        })
    }

    /// Reads back what a file holds, in order (for tests).
    pub fn read(path: &std::path::Path) -> Vec<(ReplyTo, ThreadMessage)> {
        #[derive(Deserialize)]
        struct Line {
            to: ReplyTo,
            message: ThreadMessage,
        }
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Line>(line).ok())
            .map(|line| (line.to, line.message))
            .collect()
    }
}

impl ChatPoster for JsonLinesPoster {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        Box::pin(async move {
            use std::io::Write;
            let line = serde_json::json!({ "to": to, "message": message }).to_string();
            let mut file = self
                .file
                .lock()
                .map_err(|_| ChatError::Failed("the output file's lock is poisoned".into()))?;
            writeln!(file, "{line}").map_err(|error| ChatError::Failed(error.to_string()))
        })
    }
}
