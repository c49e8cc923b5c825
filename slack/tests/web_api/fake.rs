//! A tiny fake of Slack's Web API on 127.0.0.1: answers the methods `SlackApi` calls with the
//! JSON shapes slack-morphism needs, and records every request.
//!
//! Scripted refusals: channel `C404` → `channel_not_found`, channel `CBUSY` → HTTP 429 with
//! `Retry-After: 3`, channel `CSLOW` → no answer for 5 s, group `SBAD` → `no_such_subteam`, reaction `already` → `already_reacted`.

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
    /// `GET` or `POST`.
    pub verb: String,
    /// The path, e.g. `/api/chat.postMessage`.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    next_ts: AtomicU64,
}

/// A running fake; stops when dropped.
pub struct FakeSlack {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSlack {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeSlack {
        let shared = Arc::new(Shared::default());
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
        FakeSlack { base, shared, task }
    }

    /// The Web API URL to give `SlackApi`, with the trailing slash tests are told to use.
    pub fn api_url(&self) -> String {
        format!("{}/api/", self.base)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// The requests to one Web API method (`chat.postMessage`).
    pub fn calls(&self, method: &str) -> Vec<Recorded> {
        let path = format!("/api/{method}");
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    verb: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let recorded = Recorded {
        verb: verb.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    shared.requests.lock().expect("lock").push(recorded.clone());

    let field = |name: &str| recorded.body[name].as_str().unwrap_or_default().to_string();
    let ok = |value: Value| (StatusCode::OK, axum::Json(value)).into_response();
    let refuse = |code: &str| ok(json!({ "ok": false, "error": code }));
    match recorded.path.as_str() {
        "/api/chat.postMessage" => match field("channel").as_str() {
            "C404" => refuse("channel_not_found"),
            "CSLOW" => {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                refuse("too_slow")
            }
            "CBUSY" => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "3")],
                axum::Json(json!({ "ok": false, "error": "ratelimited" })),
            )
                .into_response(),
            channel => {
                let n = shared.next_ts.fetch_add(1, Ordering::SeqCst) + 1;
                let ts = format!("1700000000.{n:06}");
                ok(json!({
                    "ok": true,
                    "channel": channel,
                    "ts": ts,
                    "message": { "ts": ts, "text": recorded.body["text"] },
                }))
            }
        },
        "/api/chat.update" => ok(json!({
            "ok": true,
            "channel": field("channel"),
            "ts": field("ts"),
            "message": {},
        })),
        "/api/chat.postEphemeral" => ok(json!({ "ok": true, "message_ts": "1700000000.999999" })),
        "/api/reactions.add" => match field("name").as_str() {
            "already" => refuse("already_reacted"),
            _ => ok(json!({ "ok": true })),
        },
        "/api/usergroups.users.list" => {
            if recorded
                .query
                .as_deref()
                .unwrap_or_default()
                .contains("usergroup=SBAD")
            {
                refuse("no_such_subteam")
            } else {
                ok(json!({ "ok": true, "users": ["U1", "U2"] }))
            }
        }
        // Slack answers a response_url with a bare `ok`.
        path if path.starts_with("/commands/") => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "ok").into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "ok": false, "error": "unknown_method" })),
        )
            .into_response(),
    }
}
