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

/// Where a request stands, as its root message shows it at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardState {
    /// Waiting for approvals.
    AwaitingApproval,
    /// Allowed or approved; the job is in the outbox waiting for an executor.
    Queued,
    /// An executor claimed the job and is running it.
    Running,
    /// The statement ran (a write was committed).
    Succeeded,
    /// The statement failed; nothing was committed.
    Failed,
    /// The write touched more rows than approved and was rolled back.
    RolledBack,
    /// The executor refused the job.
    Refused,
    /// The executor stopped mid-write; nobody knows whether it committed.
    Unknown,
    /// A reviewer rejected it.
    Rejected,
    /// The approvals did not arrive in time.
    Expired,
    /// The requester cancelled it.
    Cancelled,
}

impl CardState {
    /// A short label (`Awaiting approval`, `Rolled back`, ...).
    pub fn label(self) -> &'static str {
        match self {
            CardState::AwaitingApproval => "Awaiting approval",
            CardState::Queued => "Queued",
            CardState::Running => "Running",
            CardState::Succeeded => "Succeeded",
            CardState::Failed => "Failed",
            CardState::RolledBack => "Rolled back",
            CardState::Refused => "Refused by the executor",
            CardState::Unknown => "Outcome unknown",
            CardState::Rejected => "Rejected",
            CardState::Expired => "Expired",
            CardState::Cancelled => "Cancelled",
        }
    }

    /// An emoji name (without colons) that shows the state at a glance.
    pub fn emoji(self) -> &'static str {
        match self {
            CardState::AwaitingApproval => "hourglass_flowing_sand",
            CardState::Queued => "inbox_tray",
            CardState::Running => "gear",
            CardState::Succeeded => "white_check_mark",
            CardState::Failed => "x",
            CardState::RolledBack => "leftwards_arrow_with_hook",
            CardState::Refused => "no_entry",
            CardState::Unknown => "warning",
            CardState::Rejected => "no_entry_sign",
            CardState::Expired => "alarm_clock",
            CardState::Cancelled => "heavy_multiplication_x",
        }
    }

    /// True once nothing more will happen to the request.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            CardState::AwaitingApproval | CardState::Queued | CardState::Running
        )
    }

    /// The state a job's stored state shows as (`queued`, `running`, `succeeded`, ...).
    pub fn from_job_state(state: &str) -> Option<CardState> {
        Some(match state {
            "queued" => CardState::Queued,
            "running" => CardState::Running,
            "succeeded" => CardState::Succeeded,
            "failed" => CardState::Failed,
            "rolled_back" => CardState::RolledBack,
            "refused" => CardState::Refused,
            "unknown" => CardState::Unknown,
            _ => return None,
        })
    }
}

/// One approval requirement as the card shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRequirement {
    /// What is asked, e.g. `2 approvals from dba`.
    pub wanted: String,
    /// Whether it is met.
    pub satisfied: bool,
}

/// A request's root message: everything a reviewer needs, platform independent. Adapters
/// render it their way (Slack Block Kit, Discord embed, console HTML); [`RequestCard::render_text`]
/// is the plain-text form.
///
/// People are principals (`slack:U024BE7LH`, `console:alice`); adapters turn those of their
/// platform into mentions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCard {
    /// The request's id (what `/query cancel <id>` takes).
    pub request_id: String,
    /// Who asked.
    pub requester: String,
    /// The target's name.
    pub target: String,
    /// The SQL as it will run.
    pub sql: String,
    /// The requester's justification.
    pub reason: Option<String>,
    /// The classification's category (`read`, `write`, `ddl`, ...).
    pub category: String,
    /// Why the request needs review (the matching rules' reasons).
    pub review_reasons: Vec<String>,
    /// The executor's row estimate, when it gave one.
    pub estimated_rows: Option<u64>,
    /// Notes from the estimate (cascading foreign keys, triggers) or why there is none.
    pub estimate_notes: Vec<String>,
    /// Who must approve, and whether each requirement is met.
    pub requirements: Vec<CardRequirement>,
    /// Whose approvals count so far.
    pub approvers: Vec<String>,
    /// The state now.
    pub state: CardState,
    /// One line on the state (who rejected, why it was refused, ...).
    pub state_detail: Option<String>,
    /// When a pending request expires (Unix milliseconds).
    pub expires_at_ms: Option<u64>,
    /// The reaction names that approve and reject, for the how-to line.
    pub approve_reaction: String,
    /// The reaction name that rejects.
    pub reject_reaction: String,
}

impl RequestCard {
    /// The card as plain text (for logs, the console and notifications).
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "[{}] {} request {} on {} by {}\n",
            self.state.label(),
            self.category,
            self.request_id,
            self.target,
            self.requester
        );
        if let Some(detail) = &self.state_detail {
            let _ = writeln!(out, "{detail}");
        }
        if let Some(reason) = &self.reason {
            let _ = writeln!(out, "Reason: {reason}");
        }
        let _ = writeln!(out, "```\n{}\n```", self.sql);
        for why in &self.review_reasons {
            let _ = writeln!(out, "Needs review: {why}");
        }
        match self.estimated_rows {
            Some(rows) => {
                let _ = writeln!(out, "Estimated rows: {rows}");
            }
            None if !self.review_reasons.is_empty() => {
                let _ = writeln!(out, "Estimated rows: no estimate");
            }
            None => {}
        }
        for note in &self.estimate_notes {
            let _ = writeln!(out, "Note: {note}");
        }
        for requirement in &self.requirements {
            let mark = if requirement.satisfied { "[x]" } else { "[ ]" };
            let _ = writeln!(out, "{mark} {}", requirement.wanted);
        }
        if !self.approvers.is_empty() {
            let _ = writeln!(out, "Approved by: {}", self.approvers.join(", "));
        }
        if self.state == CardState::AwaitingApproval {
            let _ = writeln!(
                out,
                "React with :{}: to approve or :{}: to reject.",
                self.approve_reaction, self.reject_reaction
            );
        }
        out.trim_end().to_string()
    }
}

/// Posts each message through the poster of its thread's platform (an executor serving teams on
/// Slack and on Discord). A platform without a poster is an error, never a silent drop.
#[derive(Default, Clone)]
pub struct PlatformPoster {
    posters: Vec<(String, Arc<dyn ChatPoster>)>,
}

impl PlatformPoster {
    /// No platforms yet.
    pub fn new() -> PlatformPoster {
        PlatformPoster::default()
    }

    /// Adds the poster for `platform` (`slack`, `discord`, ...).
    pub fn with(mut self, platform: &str, poster: Arc<dyn ChatPoster>) -> PlatformPoster {
        self.posters.push((platform.to_string(), poster));
        self
    }

    /// True when no platform has a poster.
    pub fn is_empty(&self) -> bool {
        self.posters.is_empty()
    }
}

impl ChatPoster for PlatformPoster {
    fn post<'a>(&'a self, to: &'a ReplyTo, message: &'a ThreadMessage) -> PostFuture<'a> {
        match self
            .posters
            .iter()
            .find(|(platform, _)| *platform == to.platform)
        {
            Some((_, poster)) => poster.post(to, message),
            None => Box::pin(async move { Err(ChatError::UnknownPlatform(to.platform.clone())) }),
        }
    }
}
