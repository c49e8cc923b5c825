//! `countersign dev` switched to real services by configuration only: the control store in
//! PostgreSQL, the queue in Redis, the policy's `prod` target on a PostgreSQL database. The
//! review is driven through the console's HTTP API (the browser test covers the page itself).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use countersign_cli::dev_cmd::{DevArgs, DevServer};
use countersign_testkit::{PgDatabase, RedisServer};

mod common;
use serde_json::{json, Value};
use sqlx::Executor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange (`Connection: close`): the status and the body as JSON (or Null).
async fn http(address: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the console answers");
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let payload = answer
        .split_once("\r\n\r\n")
        .map(|(_, payload)| payload)
        .unwrap_or_default();
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

async fn messages(address: SocketAddr, person: &str) -> Vec<Value> {
    let (status, view) = http(
        address,
        "GET",
        &format!("/console/api/messages?as={person}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{view}");
    view["messages"].as_array().cloned().unwrap_or_default()
}

/// Waits until `person` sees a message for which `wanted` holds.
async fn wait_for(
    address: SocketAddr,
    person: &str,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let seen = messages(address, person).await;
        if let Some(found) = seen.iter().find(|m| wanted(m)) {
            return found.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{person} never saw {what}; they see:\n{}",
            serde_json::to_string_pretty(&seen).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_on_postgresql_redis_and_a_postgresql_target() {
    let control = PgDatabase::create().await;
    let target = PgDatabase::create().await;
    let redis = RedisServer::start();
    target
        .pool()
        .await
        .execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);
             INSERT INTO orders VALUES (1, 'cancelled'), (2, 'paid'), (3, 'shipped');",
        )
        .await
        .expect("the target's table");
    let data_dir = common::scratch_dir("dev-services");
    let dev = DevServer::start(DevArgs {
        control_database_url: Some(control.url.clone()),
        queue_url: Some(redis.url()),
        targets: vec![format!("prod={}", target.url)],
        users: vec!["erin".into()],
        // The estimate below must come from the executor; a loaded machine may take longer than
        // the default 2 s for the first one (which also opens the target's first connection).
        preflight_seconds: 30.0,
        ..common::dev_args(&data_dir)
    })
    .await
    .expect("countersign dev starts on real services");
    let address = dev.address;

    // The workspace says which targets run here.
    let (status, workspace) = http(address, "GET", "/console/api/workspace", None).await;
    assert_eq!(status, 200);
    let served: Vec<&str> = workspace["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| t["served"] == json!(true))
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(served, ["prod"]);

    // Bad input gets a reason, not a crash.
    let (status, refusal) = http(
        address,
        "POST",
        "/console/api/messages",
        Some(&json!({"as": "mallory", "channel": "#demo", "text": "/query help"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(refusal["error"]
        .as_str()
        .unwrap_or_default()
        .contains("mallory"));

    // Erin holds no role: refused, with the reason, privately.
    let (status, _) = http(
        address,
        "POST",
        "/console/api/messages",
        Some(
            &json!({"as": "erin", "channel": "#demo", "text": "/query prod SELECT * FROM orders"}),
        ),
    )
    .await;
    assert_eq!(status, 202);
    let denied = wait_for(address, "erin", "her denial", |m| {
        m["author"] == json!("countersign") && m["visible_to"] == json!("console:erin")
    })
    .await;
    assert!(
        denied["text"].as_str().unwrap_or_default().contains("role"),
        "the denial names the missing role: {denied}"
    );

    // Alice asks for a write on prod: the policy wants one approval from dba or oncall, and the
    // card goes to prod's review channel.
    let (status, _) = http(
        address,
        "POST",
        "/console/api/messages",
        Some(&json!({
            "as": "alice", "channel": "#demo",
            "text": "/query prod --reason \"clean up\" DELETE FROM orders WHERE status = 'cancelled'"
        })),
    )
    .await;
    assert_eq!(status, 202);
    let card = wait_for(address, "bob", "the card", |m| {
        m["card"]["state"] == json!("awaiting_approval")
    })
    .await;
    assert_eq!(card["channel"], json!("#db-reviews"));
    assert!(
        card["card"]["estimated_rows"].is_u64(),
        "the PostgreSQL executor's preflight estimate: {card}"
    );
    let root = card["id"].as_str().expect("id").to_string();

    let (status, _) = http(
        address,
        "POST",
        "/console/api/reactions",
        Some(&json!({"as": "bob", "message": root, "reaction": "white_check_mark", "added": true})),
    )
    .await;
    assert_eq!(status, 202);
    let result = wait_for(address, "alice", "the result", |m| {
        m["thread"] == json!(root) && m["text"].as_str().unwrap_or_default().contains("Audit #")
    })
    .await;
    assert!(
        result["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Succeeded on prod: 1 row affected"),
        "{result}"
    );
    wait_for(address, "alice", "the card's final state", |m| {
        m["id"] == json!(root) && m["card"]["state"] == json!("succeeded")
    })
    .await;

    // It all happened in the configured services.
    let remaining: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&target.pool().await)
        .await
        .expect("count");
    assert_eq!(remaining, 2);
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM cs_audit")
        .fetch_one(&control.pool().await)
        .await
        .expect("the control store is PostgreSQL");
    assert!(audited >= 5, "{audited} audit entries in PostgreSQL");
    assert!(
        !data_dir.join("control.db").exists(),
        "no SQLite control store was made"
    );

    dev.shutdown().await;
    std::fs::remove_dir_all(&data_dir).ok();
}

#[tokio::test]
async fn bad_configuration_is_refused_with_a_clear_reason() {
    let data_dir = common::scratch_dir("dev-refusals");
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let cases = [
        (
            DevArgs {
                listen: busy.local_addr().expect("address"),
                ..common::dev_args(&data_dir)
            },
            "listening on 127.0.0.1:",
        ),
        (
            DevArgs {
                targets: vec!["staging=sqlite://x.db".into()],
                ..common::dev_args(&data_dir)
            },
            "--target staging: the policy has no such target",
        ),
        (
            DevArgs {
                targets: vec!["demo".into()],
                ..common::dev_args(&data_dir)
            },
            "--target takes NAME=URL",
        ),
        (
            DevArgs {
                targets: vec!["demo=postgres://postgres@127.0.0.1:5432/demo".into()],
                ..common::dev_args(&data_dir)
            },
            "the policy's driver for this target is SQLite, but its URL starts with `postgres:`",
        ),
        (
            DevArgs {
                control_database_url: Some("mysql://root@127.0.0.1/x".into()),
                ..common::dev_args(&data_dir)
            },
            "unsupported control database URL",
        ),
        (
            DevArgs {
                users: vec!["bad name".into()],
                ..common::dev_args(&data_dir)
            },
            "--user \"bad name\"",
        ),
        (
            DevArgs {
                preflight_seconds: -1.0,
                ..common::dev_args(&data_dir)
            },
            "--preflight-seconds must be a positive number of seconds",
        ),
    ];
    for (bad, wanted) in cases {
        let error = match DevServer::start(bad).await {
            Ok(dev) => {
                dev.shutdown().await;
                panic!("started despite a bad setting (wanted {wanted:?})");
            }
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(wanted), "{error:?} lacks {wanted:?}");
    }
    std::fs::remove_dir_all(&data_dir).ok();
}
