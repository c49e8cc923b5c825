//! The console's HTTP side: the page (one HTML file with its script and styles, no build step,
//! nothing fetched from the network) and the JSON API the page talks to.
//!
//! ```text
//! GET  /                                   the page
//! GET  /console/api/workspace              people, channels, targets, examples
//! GET  /console/api/messages?as=&since=    what a person sees; waits up to 25 s for a change
//! POST /console/api/messages               {as, channel, thread?, text}: `/query ...` is a command
//! POST /console/api/reactions              {as, message, reaction, added}
//! ```
//!
//! The console has no sign-in: whoever reaches it can act as any of its people. It is meant
//! for 127.0.0.1. Requests must be JSON (so a page elsewhere cannot post a form to it) and a
//! request whose `Origin` is not the console's own host is refused.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::adapter::PLATFORM;
use super::hub::{ConsoleHub, ConsoleUser, HubError, MAX_TEXT_BYTES};
use crate::chat::{CommandEvent, Inbound, Origin, ReactionEvent};
use crate::Bot;

/// The page, served as is.
const PAGE: &str = include_str!("page.html");

/// How long a browser's wait for a change lasts before it asks again.
const LONG_POLL: Duration = Duration::from_secs(25);

/// One target as the console lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleTarget {
    /// The policy's name for it.
    pub name: String,
    /// `postgres`, `mysql` or `sqlite`.
    pub driver: String,
    /// Whether an executor serves it in this process (requests to others wait in the queue).
    pub served: bool,
}

/// What the page shows beside the messages.
#[derive(Debug, Clone, Serialize)]
pub struct Workspace {
    /// The people and their roles.
    pub users: Vec<ConsoleUser>,
    /// The channels.
    pub channels: Vec<String>,
    /// The targets.
    pub targets: Vec<ConsoleTarget>,
    /// Commands to try, shown under the composer.
    pub examples: Vec<String>,
    /// The reaction that approves.
    pub approve_reaction: String,
    /// The reaction that rejects.
    pub reject_reaction: String,
}

#[derive(Clone)]
struct Console {
    bot: Arc<Bot>,
    hub: Arc<ConsoleHub>,
    workspace: Arc<Workspace>,
}

/// The console's routes, on `bot` and `hub`.
pub fn router(bot: Arc<Bot>, hub: Arc<ConsoleHub>, workspace: Workspace) -> Router {
    let console = Console {
        bot,
        hub,
        workspace: Arc::new(workspace),
    };
    Router::new()
        .route("/", get(page))
        .route("/console/api/workspace", get(workspace_info))
        .route("/console/api/messages", get(messages).post(post_message))
        .route("/console/api/reactions", post(react))
        .with_state(console)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page loads nothing from elsewhere and is never framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}

async fn workspace_info(State(console): State<Console>) -> Json<Workspace> {
    Json((*console.workspace).clone())
}

/// A refusal the page shows as is: a status and a short reason.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    Refusal {
        status,
        message: message.into(),
    }
    .into_response()
}

fn hub_refusal(error: HubError) -> Response {
    let status = match error {
        HubError::NoMessage(_) | HubError::NoChannel(_) => StatusCode::NOT_FOUND,
        HubError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    refuse(status, error.to_string())
}

/// Refuses requests sent by a page of another origin (the browser names it in `Origin`).
fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://").map(|(_, rest)| rest));
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host == host => Ok(()),
        _ => Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "requests from other sites are refused".into(),
        }),
    }
}

fn person(console: &Console, name: &str) -> Result<String, Refusal> {
    let principal = if name.starts_with("console:") {
        name.to_string()
    } else {
        format!("console:{name}")
    };
    if console.hub.knows(&principal) {
        Ok(principal)
    } else {
        Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: format!("`{name}` is not one of this console's people"),
        })
    }
}

#[derive(Debug, Deserialize)]
struct ViewQuery {
    #[serde(rename = "as")]
    viewer: String,
    since: Option<u64>,
}

async fn messages(State(console): State<Console>, Query(query): Query<ViewQuery>) -> Response {
    let viewer = match person(&console, &query.viewer) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(since) = query.since {
        console.hub.wait_past(since, LONG_POLL).await;
    }
    Json(console.hub.view(&viewer)).into_response()
}

#[derive(Debug, Deserialize)]
struct NewMessage {
    #[serde(rename = "as")]
    author: String,
    channel: String,
    thread: Option<String>,
    text: String,
}

async fn post_message(
    State(console): State<Console>,
    headers: HeaderMap,
    Json(message): Json<NewMessage>,
) -> Response {
    if let Err(refusal) = same_origin(&headers) {
        return refusal.into_response();
    }
    let author = match person(&console, &message.author) {
        Ok(author) => author,
        Err(refusal) => return refusal.into_response(),
    };
    let text = message.text.trim();
    if text.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "nothing to send");
    }
    if text.len() > MAX_TEXT_BYTES {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("messages are limited to {MAX_TEXT_BYTES} bytes"),
        );
    }
    let command = text
        .strip_prefix("/query")
        .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
    let Some(command) = command else {
        // A plain message: people talk in the channel and in threads.
        return match console.hub.post(
            &message.channel,
            message.thread.as_deref(),
            &author,
            text,
            None,
            None,
        ) {
            Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
            Err(error) => hub_refusal(error),
        };
    };
    // Slash commands are seen by their author only, as on Slack and Discord.
    if let Err(error) = console
        .hub
        .post(&message.channel, None, &author, text, None, Some(&author))
    {
        return hub_refusal(error);
    }
    let event = Inbound::Command(CommandEvent {
        key: event_key(),
        origin: Origin {
            platform: PLATFORM.into(),
            channel: message.channel.clone(),
            user: author,
            respond: None,
        },
        text: command.trim().to_string(),
    });
    accepted(&console, event).await
}

#[derive(Debug, Deserialize)]
struct NewReaction {
    #[serde(rename = "as")]
    who: String,
    message: String,
    reaction: String,
    added: bool,
}

async fn react(
    State(console): State<Console>,
    headers: HeaderMap,
    Json(reaction): Json<NewReaction>,
) -> Response {
    if let Err(refusal) = same_origin(&headers) {
        return refusal.into_response();
    }
    let who = match person(&console, &reaction.who) {
        Ok(who) => who,
        Err(refusal) => return refusal.into_response(),
    };
    let channel =
        match console
            .hub
            .react(&reaction.message, &who, &reaction.reaction, reaction.added)
        {
            Ok(Some(channel)) => channel,
            Ok(None) => return StatusCode::NO_CONTENT.into_response(),
            Err(error) => return hub_refusal(error),
        };
    let event = Inbound::Reaction(ReactionEvent {
        key: event_key(),
        platform: PLATFORM.into(),
        user: who,
        channel,
        message: reaction.message,
        reaction: reaction.reaction,
        added: reaction.added,
    });
    accepted(&console, event).await
}

/// Hands an event to the flow; like Slack's acknowledgement, the answer means it is stored.
async fn accepted(console: &Console, event: Inbound) -> Response {
    match console.bot.receive(event).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(error) => {
            tracing::error!(%error, "the console could not store an event");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Countersign cannot take requests right now (its control store does not answer). Try again in a moment.",
            )
        }
    }
}

/// A fresh, unguessable event id.
fn event_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: fall back to the clock and a counter, still unique in this process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return format!("{}-{n}", countersign_control::now_ms());
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_consoles_own_origin_may_post() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8700".parse().expect("header"));
        assert!(
            same_origin(&headers).is_ok(),
            "no Origin: not a browser page"
        );
        headers.insert(
            header::ORIGIN,
            "http://127.0.0.1:8700".parse().expect("header"),
        );
        assert!(same_origin(&headers).is_ok());
        headers.insert(
            header::ORIGIN,
            "http://evil.example".parse().expect("header"),
        );
        assert!(same_origin(&headers).is_err());
    }

    #[test]
    fn event_keys_differ() {
        assert_ne!(event_key(), event_key());
        assert_eq!(event_key().len(), 32);
    }
}
