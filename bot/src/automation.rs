//! The automation endpoint: maintenance scripts and scheduled jobs submit SQL over HTTP and get
//! the same decisions as people in chat.
//!
//! - `POST /api/v1/queries` with `Authorization: Bearer <token>` and
//!   `{"target": "...", "sql": "...", "reason": "...", "idempotency_key": "..."}`. The token
//!   names a service identity (`service:<name>` in the policy). The answer is the decision:
//!   `denied` with the reasons, `queued` (allowed: the executor runs it), or `pending` (posted
//!   to the target's review channel, or the automation channel, for people to review). The
//!   same idempotency key returns the same request.
//! - `GET /api/v1/queries/<id>?wait_seconds=N`: the request's state now, with the result summary
//!   once the executor finished it; waits up to N seconds (at most 60) for a final state.
//!
//! Tokens are stored hashed (SHA-256), one line per service in a file:
//! `<service name> sha256:<hex>`. A request with a missing or unknown token is refused (401)
//! and audited; the token itself is never logged or stored.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign_control::requests::{self, RequestState};
use countersign_shared::audit::{AuditEntry, AuditEvent};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::chat::Origin;
use crate::flow::card::shown_state;
use crate::flow::query::decision_reasons;
use crate::flow::{query, request_id_for, Bot};

/// Why a token file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `<name> sha256:<64 hex digits>`.
    #[error("{path}:{line}: expected `<service name> sha256:<64 hex digits>`")]
    Malformed {
        /// The file.
        path: String,
        /// The line number.
        line: usize,
    },
}

/// The service tokens' hashes, by service name.
#[derive(Debug, Clone, Default)]
pub struct ServiceTokens {
    hashes: Vec<(String, [u8; 32])>,
}

impl ServiceTokens {
    /// Reads a token file (`#` starts a comment).
    pub fn load(path: &Path) -> Result<ServiceTokens, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ServiceTokens::parse(&text).map_err(|line| TokenFileError::Malformed {
            path: path.display().to_string(),
            line,
        })
    }

    /// Parses a token file's text; the error is the bad line's number.
    pub fn parse(text: &str) -> Result<ServiceTokens, usize> {
        let mut hashes = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(index + 1);
            };
            let digest = hash
                .strip_prefix("sha256:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or(index + 1)?;
            hashes.push((name.to_string(), digest));
        }
        Ok(ServiceTokens { hashes })
    }

    /// The service names with a token.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.hashes.iter().map(|(name, _)| name.as_str())
    }

    /// The service a token belongs to. Every stored hash is compared in constant time.
    pub fn service_of(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, hash) in &self.hashes {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// What the endpoint's handlers share.
pub struct Automation {
    bot: Arc<Bot>,
    tokens: ServiceTokens,
}

impl Automation {
    /// The endpoint for `bot`, accepting `tokens`.
    pub fn new(bot: Arc<Bot>, tokens: ServiceTokens) -> Arc<Automation> {
        Arc::new(Automation { bot, tokens })
    }

    /// The routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/queries", post(submit))
            .route("/api/v1/queries/{id}", get(status))
            .with_state(self)
    }

    /// The calling service, or the refusal (audited).
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        target: &str,
    ) -> Result<String, Box<Response>> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(service) = token.and_then(|t| self.tokens.service_of(t)) {
            return Ok(service.to_string());
        }
        let why = if token.is_some() {
            "automation request with an unknown service token"
        } else {
            "automation request without a service token"
        };
        self.bot.metrics().refused("bad_token");
        tracing::warn!("refused an automation request: {why}");
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        let entry = AuditEntry {
            reasons: vec![why.to_string()],
            decision: Some("refused".into()),
            ..AuditEntry::new(
                AuditEvent::Refused,
                countersign_control::now_ms(),
                format!("auth-{}", hex::encode(id)),
                "unauthenticated",
                target,
            )
        };
        if let Err(error) = countersign_control::audit_log::enqueue(self.bot.store(), &entry).await
        {
            tracing::error!(%error, "could not audit a refused automation request");
        }
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "a valid service token is required",
        )))
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The body of `POST /api/v1/queries`.
#[derive(Debug, Deserialize)]
pub struct Submission {
    /// The target's name.
    pub target: String,
    /// The SQL.
    pub sql: String,
    /// Why (shown to reviewers).
    #[serde(default)]
    pub reason: Option<String>,
    /// Makes a retried submission return the same request.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

async fn submit(
    State(automation): State<Arc<Automation>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let parsed: Result<Submission, _> = serde_json::from_slice(&body);
    let target = parsed
        .as_ref()
        .map(|s| s.target.clone())
        .unwrap_or_default();
    let service = match automation.authenticate(&headers, &target).await {
        Ok(service) => service,
        Err(refused) => return *refused,
    };
    let submission = match parsed {
        Ok(submission) => submission,
        Err(parse_error) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"target\", \"sql\", \"reason\"?, \"idempotency_key\"?}}: {parse_error}"),
            )
        }
    };
    if automation.bot.policy().target(&submission.target).is_none() {
        let known: Vec<&str> = automation
            .bot
            .policy()
            .targets()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown target `{}`; targets: {}",
                submission.target,
                known.join(", ")
            ),
        );
    }
    let key = match &submission.idempotency_key {
        Some(key) => format!("{service}:{key}"),
        None => {
            let mut bytes = [0u8; 16];
            let _ = getrandom::fill(&mut bytes);
            format!("{service}:{}", hex::encode(bytes))
        }
    };
    let channel = automation
        .bot
        .config()
        .automation_channel
        .as_ref()
        .map(|(_, channel)| channel.clone())
        .unwrap_or_default();
    let outcome = query::run(
        &automation.bot,
        query::Submission {
            request_id: request_id_for("automation", &key),
            origin: Origin::automation(&service, &channel),
            target: submission.target,
            sql: submission.sql,
            reason: submission.reason,
        },
    )
    .await;
    match outcome {
        Ok(outcome) => Json(outcome).into_response(),
        Err(flow_error) => {
            tracing::error!(error = %flow_error, "an automation request failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request could not be completed; it is safe to retry with the same idempotency_key",
            )
        }
    }
}

/// Query parameters of the status call.
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    /// How long to wait for a final state (at most 60).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

fn is_final(state: &str) -> bool {
    !matches!(state, "received" | "pending" | "queued" | "running")
}

async fn status(
    State(automation): State<Arc<Automation>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<StatusQuery>,
) -> Response {
    let service = match automation.authenticate(&headers, "").await {
        Ok(service) => service,
        Err(refused) => return *refused,
    };
    let wait = Duration::from_secs(query.wait_seconds.unwrap_or(0).min(60));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let stored = match requests::load(automation.bot.store(), &id).await {
            Ok(Some(stored)) if stored.requester == format!("service:{service}") => stored,
            Ok(_) => return error(StatusCode::NOT_FOUND, "no such request for this service"),
            Err(store_error) => {
                tracing::error!(error = %store_error, "loading a request failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the control store is unreachable",
                );
            }
        };
        // The API names states as the card does: the job's once queued.
        let state = shown_state(&stored);
        if is_final(&state) || tokio::time::Instant::now() >= deadline {
            let mut body = serde_json::json!({
                "request_id": stored.id,
                "state": state,
                "final": is_final(&state),
                "target": stored.target,
                "thread": stored.reply_to,
                "summary": stored.job_summary,
            });
            if stored.state == RequestState::Denied {
                body["reasons"] = serde_json::json!(decision_reasons(stored.decision.as_ref()));
            }
            if is_final(&state) {
                // The newest sealed audit record of the request: what the thread's audit line
                // shows, for the script's own log.
                if let Ok(records) = countersign_control::audit_log::records_for_request(
                    automation.bot.store(),
                    &stored.id,
                )
                .await
                {
                    if let Some(last) = records.last() {
                        body["audit"] = serde_json::json!(last.reference());
                    }
                }
            }
            return Json(body).into_response();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Service names with tokens that no policy role names (they would be denied everything).
pub fn unknown_services(
    tokens: &ServiceTokens,
    policy: &countersign_shared::policy::Policy,
) -> Vec<String> {
    let members: HashMap<String, ()> = policy
        .roles()
        .iter()
        .flat_map(|r| r.members.iter())
        .map(|m| (m.to_string(), ()))
        .collect();
    tokens
        .services()
        .filter(|s| !members.contains_key(&format!("service:{s}")))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(service: &str, token: &str) -> String {
        format!(
            "{service} sha256:{}",
            hex::encode(Sha256::digest(token.as_bytes()))
        )
    }

    #[test]
    fn tokens_are_matched_by_their_hash_only() {
        let text = format!(
            "# services\n{}\n\n{}  # the nightly job\n",
            line("backup", "cst_one"),
            line("nightly", "cst_two")
        );
        let tokens = ServiceTokens::parse(&text).expect("parses");
        assert_eq!(tokens.service_of("cst_one"), Some("backup"));
        assert_eq!(tokens.service_of("cst_two"), Some("nightly"));
        assert_eq!(tokens.service_of("cst_three"), None);
        assert_eq!(tokens.service_of(""), None);
        assert_eq!(
            tokens.services().collect::<Vec<_>>(),
            vec!["backup", "nightly"]
        );
    }

    #[test]
    fn a_malformed_token_file_names_the_line() {
        assert_eq!(
            ServiceTokens::parse("nightly cst_plain_token\n").err(),
            Some(1)
        );
        assert_eq!(
            ServiceTokens::parse("\nnightly sha256:abcd\n").err(),
            Some(2)
        );
        assert_eq!(ServiceTokens::parse("a b c\n").err(), Some(1));
    }
}
