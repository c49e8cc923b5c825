//! Preflight: the bot asks for a row estimate before a request goes to review; the executor
//! plans the statement (EXPLAIN, never run) and answers.
//!
//! Requests are signed by the bot like jobs (with their own context, see
//! [`countersign_shared::job::PreflightRequest`]); unsigned, expired or multi-statement ones get
//! an error answer. The answer is JSON: `{"ok": true, "rows": 1200, "notes": [...]}` or
//! `{"ok": false, "error": "..."}`.

use std::sync::Arc;
use std::time::Duration;

use countersign_control::now_s;
use countersign_control::queue::{Delivery, JobQueue, Stream};
use countersign_shared::sql::classify;
use tokio_util::sync::CancellationToken;

use crate::runner::Inner;

/// Longest a preflight's EXPLAIN may take.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves preflight requests until `shutdown`.
pub(crate) async fn run(inner: Arc<Inner>, queue: JobQueue, shutdown: CancellationToken) {
    let target = inner.config.target.clone();
    loop {
        let read = queue.read(
            Stream::Preflight,
            &target,
            &inner.config.executor_id,
            8,
            Duration::from_millis(500),
        );
        let deliveries = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = read => result,
        };
        match deliveries {
            Ok(deliveries) => {
                for delivery in deliveries {
                    let id = delivery.id.clone();
                    answer(&inner, delivery).await;
                    if let Err(error) = inner.queue.ack(Stream::Preflight, &target, &[id]).await {
                        tracing::warn!(%error, "acknowledging a preflight failed");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading preflight requests failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn answer(inner: &Inner, delivery: Delivery) {
    let Ok(signed) = delivery.envelope else {
        inner.metrics.preflight("refused");
        return;
    };
    let request = match inner.verifier.verify_preflight(&signed, now_s()) {
        Ok(request) => request,
        Err(error) => {
            // An unverified request gets no answer: its reply id is not trusted either.
            tracing::warn!(%error, "refused a preflight request");
            inner.metrics.preflight("refused");
            return;
        }
    };
    let reply = if request.target != inner.config.target {
        serde_json::json!({"ok": false, "error": format!("this executor serves `{}`, not `{}`", inner.config.target, request.target)})
    } else {
        let classification = classify(
            &request.sql,
            inner.settings.dialect,
            inner.policy.classify_options(),
        );
        if !classification.is_ok() || classification.statements.len() != 1 {
            serde_json::json!({"ok": false, "error": "the statement must be exactly one statement the classifier understands"})
        } else {
            let written: Vec<String> = classification
                .statements
                .iter()
                .flat_map(|s| s.tables_written.iter().map(|t| t.as_str().to_string()))
                .collect();
            match inner
                .db
                .estimate(&request.sql, &written, PREFLIGHT_TIMEOUT)
                .await
            {
                Ok(estimate) => {
                    serde_json::json!({"ok": true, "rows": estimate.rows, "notes": estimate.notes})
                }
                Err(error) => serde_json::json!({"ok": false, "error": error.to_string()}),
            }
        }
    };
    let outcome = if reply["ok"] == serde_json::Value::Bool(true) {
        "answered"
    } else {
        "failed"
    };
    inner.metrics.preflight(outcome);
    if let Err(error) = inner.queue.reply(&request.id, &reply).await {
        tracing::warn!(%error, "answering a preflight failed");
    }
}
