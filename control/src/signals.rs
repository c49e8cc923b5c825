//! Shutdown signals, the same for every binary.

/// Returns when the process is asked to stop: SIGTERM (Kubernetes, compose) or Ctrl-C. When
/// SIGTERM cannot be watched, only Ctrl-C ends the wait (and a warning says so).
pub async fn shutdown_requested() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
