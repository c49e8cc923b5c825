//! Slack's HTTP mode: slash commands (`POST /slack/commands`, form-encoded) and the Events API
//! (`POST /slack/events`, JSON), each request's signature checked before anything else.
//!
//! A request is acknowledged as soon as its event is in the inbox (well inside Slack's three
//! seconds); the work happens after. Refused: unsigned, stale (over five minutes either way),
//! forged, and replayed requests (the same signature seen again inside the window; a replay
//! after the window is stale). A retried event (`x-slack-retry-num`) is acknowledged and dropped
//! by the inbox, which knows its event id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use slack_morphism::prelude::{SlackCommandEvent, SlackPushEvent};

use super::convert::{self, Pushed};
use super::signature::{self, MAX_AGE_SECONDS};
use crate::flow::Bot;

/// Remembers the signatures seen inside the freshness window.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, u64>>,
}

impl ReplayGuard {
    /// True the first time a signature is seen (until it could no longer pass as fresh).
    pub fn first_time(&self, signature: &str, now: u64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.len() > 50_000 {
            seen.retain(|_, until| *until >= now);
        }
        match seen.get(signature) {
            Some(until) if *until >= now => false,
            _ => {
                seen.insert(signature.to_string(), now + 2 * MAX_AGE_SECONDS);
                true
            }
        }
    }
}

/// What the HTTP handlers share.
pub struct SlackHttp {
    bot: Arc<Bot>,
    signing_secret: Vec<u8>,
    replays: ReplayGuard,
}

impl SlackHttp {
    /// Handlers for `bot`, checking signatures with `signing_secret`.
    pub fn new(bot: Arc<Bot>, signing_secret: impl Into<Vec<u8>>) -> Arc<SlackHttp> {
        Arc::new(SlackHttp {
            bot,
            signing_secret: signing_secret.into(),
            replays: ReplayGuard::default(),
        })
    }

    /// The routes: `POST /slack/commands` and `POST /slack/events`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/slack/commands", post(commands))
            .route("/slack/events", post(events))
            .with_state(self)
    }

    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), (StatusCode, String)> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = countersign_control::now_s();
        let signature = header("x-slack-signature");
        match signature::verify(
            &self.signing_secret,
            header("x-slack-request-timestamp"),
            signature,
            body,
            now,
        ) {
            Ok(()) => {}
            Err(error) => return Err(self.refuse(error.code(), &error)),
        }
        if !self.replays.first_time(signature.unwrap_or_default(), now) {
            return Err(self.refuse("replay", &"the request was already received"));
        }
        Ok(())
    }

    fn refuse(&self, code: &str, why: &dyn std::fmt::Display) -> (StatusCode, String) {
        self.bot.metrics().refused(code);
        tracing::warn!(reason = code, "refused a Slack request: {why}");
        let status = if code == "replay" {
            StatusCode::CONFLICT
        } else {
            StatusCode::UNAUTHORIZED
        };
        (status, format!("{why}\n"))
    }
}

/// The text Slack shows the requester when the bot cannot take the command.
const UNAVAILABLE: &str =
    "Countersign cannot take requests right now (its database is unreachable). Nothing was run; try again in a minute.";

async fn commands(State(http): State<Arc<SlackHttp>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    if let Err(refused) = http.check(&headers, &body) {
        return refused.into_response();
    }
    let command: SlackCommandEvent = match serde_urlencoded::from_bytes(&body) {
        Ok(command) => command,
        Err(error) => {
            http.bot.metrics().unknown_event();
            tracing::warn!(%error, "a slash command Slack sent does not read");
            return (StatusCode::BAD_REQUEST, "malformed slash command\n").into_response();
        }
    };
    let response = match http.bot.receive(convert::command(&command)).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(error) => {
            tracing::error!(%error, "could not store a command");
            Json(serde_json::json!({"response_type": "ephemeral", "text": UNAVAILABLE}))
                .into_response()
        }
    };
    http.bot.metrics().acked(started.elapsed());
    response
}

async fn events(State(http): State<Arc<SlackHttp>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    if let Err(refused) = http.check(&headers, &body) {
        return refused.into_response();
    }
    let event: SlackPushEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(error) => {
            http.bot.metrics().unknown_event();
            tracing::warn!(%error, "an event Slack sent does not read");
            return (StatusCode::BAD_REQUEST, "malformed event\n").into_response();
        }
    };
    let response = match event {
        SlackPushEvent::UrlVerification(challenge) => {
            Json(serde_json::json!({"challenge": challenge.challenge})).into_response()
        }
        SlackPushEvent::AppRateLimited(limited) => {
            tracing::warn!(team = %limited.team_id, "Slack is rate-limiting this app's events");
            StatusCode::OK.into_response()
        }
        SlackPushEvent::EventCallback(callback) => match convert::push(&callback) {
            Pushed::Event(inbound) => match http.bot.receive(inbound).await {
                Ok(_) => StatusCode::OK.into_response(),
                // Not acknowledged: Slack retries it later.
                Err(error) => {
                    tracing::error!(%error, "could not store an event");
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
            },
            Pushed::Ignored => StatusCode::OK.into_response(),
            Pushed::Unreadable(what) => {
                http.bot.metrics().unknown_event();
                tracing::warn!("ignored {what}");
                StatusCode::OK.into_response()
            }
        },
    };
    http.bot.metrics().acked(started.elapsed());
    response
}
