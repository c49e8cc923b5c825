//! The executor's HTTP endpoints: `/healthz` (the process is alive), `/readyz` (it can take
//! jobs: not draining, and its databases and Redis answer) and `/metrics` (Prometheus).

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::runner::Executor;

/// The routes.
pub fn router(executor: Executor) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(executor)
}

async fn readyz(State(executor): State<Executor>) -> impl IntoResponse {
    match executor.readiness().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn metrics(State(executor): State<Executor>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        executor.metrics().encode(),
    )
}

/// Serves the routes on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    executor: Executor,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(executor))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds the address, saying which one failed.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}
