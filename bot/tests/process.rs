//! The `countersign-bot` binary as it runs in production: configured from flags and the
//! environment, in Slack's HTTP mode against the fake Slack, probed, and stopped with SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

async fn get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out).await;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_serves_probes_and_commands_and_stops_cleanly_on_sigterm() {
    let mut world = World::new().await;
    world.start_executor().await;
    let dir = std::env::temp_dir().join(countersign_testkit::unique_name("countersign-bot-test"));
    std::fs::create_dir_all(&dir).expect("dir");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).expect("policy");
    let port = countersign_testkit::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign-bot"))
        .args(["--policy"])
        .arg(&policy)
        .args([
            "--slack-mode",
            "http",
            "--slack-api-url",
            &world.slack.api_url(),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--stream-prefix", &world.prefix, "--log-format", "text"])
        .args(["--upkeep-seconds", "0.2", "--drain-seconds", "10"])
        .env("COUNTERSIGN_CONTROL_DATABASE_URL", &world.control.url)
        .env("COUNTERSIGN_REDIS_URL", &world.redis_url)
        .env("COUNTERSIGN_SIGNING_KEY", world.signer.to_text())
        .env("SLACK_BOT_TOKEN", "xoxb-test-bot-token")
        .env("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .env("COUNTERSIGN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bot binary");

    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "the bot never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(port, "/healthz").await.0, 200);

    let sender = world
        .slack
        .http_sender(&format!("http://127.0.0.1:{port}"), SIGNING_SECRET);
    let reply = sender
        .send_command(ALICE, ENG, "shop SELECT 6 * 7 AS answer")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let root = world.root_containing(ENG, "SELECT 6 * 7 AS answer").await;
    let result = world.reply_containing(&root, "Audit #").await;
    assert!(result.visible_text().contains("42"));
    world.root_shows(&root, "Succeeded").await;

    let (status, metrics) = get(port, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("countersign_bot_requests_total{kind=\"allow\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("countersign_bot_ack_duration_seconds_count 1"),
        "{metrics}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the bot did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut logs = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut logs);
    }
    assert!(exit.success(), "exit {exit:?}\n{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(
        !logs.contains(SIGNING_SECRET) && !logs.contains("xoxb-test-bot-token"),
        "secrets in the logs:\n{logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    world.stop_executor().await;
}

#[test]
fn a_missing_secret_is_a_clear_error_not_a_panic() {
    let dir = std::env::temp_dir().join(countersign_testkit::unique_name("countersign-bot-test"));
    std::fs::create_dir_all(&dir).expect("dir");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).expect("policy");
    let output = Command::new(env!("CARGO_BIN_EXE_countersign-bot"))
        .args(["--policy"])
        .arg(&policy)
        .env_remove("COUNTERSIGN_SIGNING_KEY")
        .env_remove("COUNTERSIGN_SIGNING_KEY_FILE")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("set COUNTERSIGN_SIGNING_KEY (or COUNTERSIGN_SIGNING_KEY_FILE"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
