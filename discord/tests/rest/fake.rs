//! A tiny fake of Discord's REST API on 127.0.0.1: answers the routes `DiscordApi` uses under
//! `/api/v10` with the JSON shapes serenity needs (see `shared/protocols/discord.md`), and
//! records every request.
//!
//! Scripted answers: channel `404` → 404 Unknown Channel (10003); channel `7403` takes
//! messages but refuses threads with 403 Missing Permissions (50013); channel `7502` → 502 with
//! an HTML page; channel `7999` → no answer for 5 s; member `404` → 404 Unknown Member (10007).
//! [`FakeDiscord::rate_limit`] makes a path answer 429 a number of times.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, `PATCH`, `PUT`, `DELETE`.
    pub verb: String,
    /// The path as sent (percent-encoding kept), e.g. `/api/v10/channels/6000/messages`.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// A scripted run of 429s on one path.
struct Throttle {
    /// How many more requests get a 429.
    remaining: u32,
    /// The `retry_after` (seconds) in the 429's body.
    retry_after: f64,
    /// The `Retry-After` header's seconds (Discord's is the body's, rounded up).
    header_seconds: u64,
    /// Whether the 429 says the limit is global.
    global: bool,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    next_id: AtomicU64,
    throttles: Mutex<HashMap<String, Throttle>>,
}

/// A running fake; stops when dropped.
pub struct FakeDiscord {
    /// `http://127.0.0.1:PORT`: the base URL to give `DiscordApi`.
    pub base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeDiscord {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeDiscord {
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(8000),
            ..Shared::default()
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeDiscord { base, shared, task }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// The requests to one path.
    pub fn calls(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Answers the next `times` requests to `path` with 429, `retry_after` seconds, in the
    /// body (and rounded up in `Retry-After`, as Discord does).
    pub fn rate_limit(&self, path: &str, times: u32, retry_after: f64, global: bool) {
        self.rate_limit_with_header(path, times, retry_after, retry_after.ceil() as u64, global);
    }

    /// Like [`FakeDiscord::rate_limit`], with a `Retry-After` header that says something else
    /// than the body.
    pub fn rate_limit_with_header(
        &self,
        path: &str,
        times: u32,
        retry_after: f64,
        header_seconds: u64,
        global: bool,
    ) {
        self.shared.throttles.lock().expect("lock").insert(
            path.to_string(),
            Throttle {
                remaining: times,
                retry_after,
                header_seconds,
                global,
            },
        );
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A message object with every field serenity's `Message` requires.
fn message(id: u64, channel_id: &str, content: &Value) -> Value {
    json!({
        "id": id.to_string(),
        "channel_id": channel_id,
        "author": { "id": "1000", "username": "countersign", "bot": true },
        "content": content,
        "timestamp": "2024-01-01T00:00:00.000000+00:00",
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
    })
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "message": message, "code": code })),
    )
        .into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    verb: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        verb: verb.to_string(),
        path: uri.path().to_string(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    shared.requests.lock().expect("lock").push(recorded.clone());

    if let Some(throttle) = shared
        .throttles
        .lock()
        .expect("lock")
        .get_mut(&recorded.path)
        .filter(|throttle| throttle.remaining > 0)
    {
        throttle.remaining -= 1;
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, throttle.header_seconds.to_string())],
            axum::Json(json!({
                "message": "You are being rate limited.",
                "retry_after": throttle.retry_after,
                "global": throttle.global,
            })),
        )
            .into_response();
        if throttle.global {
            response
                .headers_mut()
                .insert("x-ratelimit-global", "true".parse().expect("header"));
        }
        return response;
    }

    let next_id = || shared.next_id.fetch_add(1, Ordering::SeqCst) + 1;
    let segments: Vec<&str> = recorded
        .path
        .trim_start_matches("/api/v10/")
        .split('/')
        .collect();
    match (verb.as_str(), segments.as_slice()) {
        ("GET", ["gateway"]) => axum::Json(json!({ "url": "ws://127.0.0.1:1" })).into_response(),
        (_, ["channels", "404", ..]) => error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"),
        (_, ["channels", "7502", ..]) => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html>502 Bad Gateway</html>",
        )
            .into_response(),
        (_, ["channels", "7999", ..]) => {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            error(StatusCode::NOT_FOUND, 10003, "Unknown Channel")
        }
        ("POST", ["channels", channel, "messages"]) => {
            axum::Json(message(next_id(), channel, &recorded.body["content"])).into_response()
        }
        ("PATCH", ["channels", channel, "messages", id]) => axum::Json(message(
            id.parse().unwrap_or(1),
            channel,
            &recorded.body["content"],
        ))
        .into_response(),
        ("DELETE", ["channels", _, "messages", _]) => StatusCode::NO_CONTENT.into_response(),
        ("POST", ["channels", "7403", "messages", _, "threads"]) => {
            error(StatusCode::FORBIDDEN, 50013, "Missing Permissions")
        }
        ("POST", ["channels", channel, "messages", id, "threads"]) => axum::Json(json!({
            "id": id,
            "guild_id": "2000",
            "parent_id": channel,
            "name": recorded.body["name"],
            "type": 11,
        }))
        .into_response(),
        ("PUT", ["channels", _, "messages", _, "reactions", _, "@me"]) => {
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        ("PATCH", ["webhooks", _, _, "messages", "@original"]) => {
            axum::Json(message(next_id(), "6000", &recorded.body["content"])).into_response()
        }
        ("GET", ["guilds", _, "members", "404"]) => {
            error(StatusCode::NOT_FOUND, 10007, "Unknown Member")
        }
        ("GET", ["guilds", _, "members", user]) => axum::Json(json!({
            "user": { "id": user, "username": "reviewer" },
            "roles": ["456", "457"],
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "deaf": false,
            "mute": false,
            "flags": 0,
        }))
        .into_response(),
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}
