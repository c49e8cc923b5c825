//! The automation endpoint end to end: a script's request allowed, reviewed in Slack, and
//! refused for a bad token; the same decisions as chat, the same audit trail.

mod common;

use std::time::Duration;

use common::*;
use countersign_shared::audit::AuditEvent;
use serde_json::{json, Value};

/// A minimal HTTP/1.1 client for JSON calls.
async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    let status: u16 = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let json = out
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_script_gets_the_same_decisions_and_can_wait_for_the_outcome() {
    let mut world = World::new().await;
    world.start_executor().await;
    let bot = world.http_bot("bot-automation").await;
    let base = bot.url();

    // Allowed: queued at once; the script waits for the result.
    let (status, answer) = call(
        &base,
        "POST",
        "/api/v1/queries",
        Some(SERVICE_TOKEN),
        Some(json!({"target": "shop", "sql": "SELECT count(*) AS n FROM orders", "reason": "nightly count"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "queued", "{answer}");
    let id = answer["request_id"].as_str().expect("id").to_string();
    let (status, done) = call(
        &base,
        "GET",
        &format!("/api/v1/queries/{id}?wait_seconds=20"),
        Some(SERVICE_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["final"], true);
    assert_eq!(
        done["summary"]["table"]["rows"][0][0]["text"], "8",
        "{done}"
    );
    assert!(
        done["audit"]
            .as_str()
            .expect("audit reference")
            .starts_with("#"),
        "{done}"
    );
    // Its thread is in the automation channel, like any other request.
    let root = world
        .root_containing(ENG, "SELECT count(*) AS n FROM orders")
        .await;
    world.reply_containing(&root, "Audit #").await;

    // The same idempotency key twice: one request.
    let body = json!({"target": "shop", "sql": "UPDATE orders SET status = 'archived' WHERE id = 2", "idempotency_key": "run-2026-11-23"});
    let (_, first) = call(
        &base,
        "POST",
        "/api/v1/queries",
        Some(SERVICE_TOKEN),
        Some(body.clone()),
    )
    .await;
    let (_, second) = call(
        &base,
        "POST",
        "/api/v1/queries",
        Some(SERVICE_TOKEN),
        Some(body),
    )
    .await;
    assert_eq!(first["state"], "pending", "{first}");
    assert_eq!(first["requirements"][0], "1 approval from dba", "{first}");
    assert_eq!(first["request_id"], second["request_id"]);
    let id = first["request_id"].as_str().expect("id").to_string();
    // Reviewed in Slack like any other request.
    let review = world.root_containing(REVIEW, "status = 'archived'").await;
    assert!(
        review.visible_text().contains("service:nightly"),
        "{}",
        review.visible_text()
    );
    let (_, waiting) = call(
        &base,
        "GET",
        &format!("/api/v1/queries/{id}"),
        Some(SERVICE_TOKEN),
        None,
    )
    .await;
    assert_eq!(waiting["state"], "pending");
    assert_eq!(waiting["final"], false);
    let approve = world
        .slack
        .http_sender(&base, SIGNING_SECRET)
        .send_reaction(true, BOB, "white_check_mark", &review.channel, &review.ts)
        .await;
    assert_eq!(approve.status, 200);
    let (_, outcome) = call(
        &base,
        "GET",
        &format!("/api/v1/queries/{id}?wait_seconds=20"),
        Some(SERVICE_TOKEN),
        None,
    )
    .await;
    assert_eq!(outcome["state"], "succeeded", "{outcome}");
    assert_eq!(outcome["summary"]["rows_affected"], 1, "{outcome}");

    // Denied with the reason.
    let (status, denied) = call(
        &base,
        "POST",
        "/api/v1/queries",
        Some(SERVICE_TOKEN),
        Some(json!({"target": "shop", "sql": "DROP TABLE orders"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(denied["state"], "denied", "{denied}");
    assert!(
        denied["reasons"].to_string().contains("not allowed")
            || denied["reasons"].to_string().contains("ddl"),
        "{denied}"
    );

    // Bad input gets a clear error.
    let (status, bad) = call(
        &base,
        "POST",
        "/api/v1/queries",
        Some(SERVICE_TOKEN),
        Some(json!({"target": "warehouse", "sql": "SELECT 1"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]
            .as_str()
            .expect("error")
            .contains("unknown target `warehouse`"),
        "{bad}"
    );

    world.stop_executor().await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_token_is_refused_and_audited_and_runs_nothing() {
    let world = World::new().await;
    let bot = world.http_bot("bot-automation").await;
    let base = bot.url();
    for token in [Some("cst_wrong"), None] {
        let (status, answer) = call(
            &base,
            "POST",
            "/api/v1/queries",
            token,
            Some(json!({"target": "shop", "sql": "DELETE FROM orders"})),
        )
        .await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["error"], "a valid service token is required");
    }
    // Another service's request cannot be read with a wrong token either.
    let (status, _) = call(
        &base,
        "GET",
        "/api/v1/queries/qanything",
        Some("cst_wrong"),
        None,
    )
    .await;
    assert_eq!(status, 401);

    countersign_control::audit_log::seal_all(&world.store)
        .await
        .expect("seal");
    let refused: Vec<String> = sqlx::query_scalar("SELECT content FROM cs_audit ORDER BY seq")
        .fetch_all(world.store.pg_pool().expect("the tests run on PostgreSQL"))
        .await
        .expect("audit");
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(
        refused
            .iter()
            .all(|r| r.contains("refused") && r.contains("service token")),
        "{refused:#?}"
    );
    assert!(
        refused.iter().all(|r| !r.contains("cst_wrong")),
        "the token itself is never stored"
    );
    let requests: i64 = sqlx::query_scalar("SELECT count(*) FROM cs_requests")
        .fetch_one(world.store.pg_pool().expect("the tests run on PostgreSQL"))
        .await
        .expect("count");
    assert_eq!(requests, 0);
    let _ = AuditEvent::Refused;
    tokio::time::sleep(Duration::from_millis(10)).await;
    bot.stop().await;
}
