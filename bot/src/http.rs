//! The bot's HTTP server: `/healthz`, `/readyz` and `/metrics` always; Slack's HTTP-mode
//! endpoints and the automation endpoint when configured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::flow::Bot;

/// Health state shared with the probes.
#[derive(Clone)]
pub struct Health {
    bot: Arc<Bot>,
    draining: Arc<AtomicBool>,
}

impl Health {
    /// Probes for `bot`.
    pub fn new(bot: Arc<Bot>) -> Health {
        Health {
            bot,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on `/readyz` answers 503: the process is shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the bot can take work; the error says what is missing.
    pub async fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining: shutting down".into());
        }
        let limit = Duration::from_secs(2);
        match tokio::time::timeout(limit, self.bot.store().ping()).await {
            Ok(Ok(())) => {}
            _ => return Err("the control database does not answer".into()),
        }
        match tokio::time::timeout(limit, self.bot.queue.ping()).await {
            Ok(Ok(())) => {}
            _ => return Err("redis does not answer".into()),
        }
        Ok(())
    }
}

/// The probe and metrics routes; merge the Slack and automation routers into it as needed.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> Response {
    match health.readiness().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(health): State<Health>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.bot.metrics().encode(),
    )
        .into_response()
}
