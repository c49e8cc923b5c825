//! `countersign dev` driven through its console in a real headless Chromium (over ChromeDriver),
//! on the embedded defaults: the control store in SQLite, the in-process queue, the demo SQLite
//! target, the example policy. What is asserted is what the people at the browser see.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`), which
//! `scripts/services.sh` (run by `scripts/test.sh`) installs when they are missing.
//! `COUNTERSIGN_TEST_CHROMEDRIVER` and `COUNTERSIGN_TEST_CHROMIUM` point elsewhere; setting
//! `COUNTERSIGN_SCREENSHOT=<file.png>` keeps a screenshot of the finished review.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use countersign_cli::dev_cmd::DevServer;
use fantoccini::{Client, ClientBuilder, Locator};
use sqlx::ConnectOptions;

mod common;

/// How long anything the browser should show may take to appear.
const PATIENCE: Duration = Duration::from_secs(30);

fn program(variable: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: run scripts/services.sh (or `apt-get install chromium \
             chromium-driver`), or set {variable}"
        )
    })
}

/// A ChromeDriver process, stopped when dropped.
struct ChromeDriver {
    child: tokio::process::Child,
    port: u16,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child =
            tokio::process::Command::new(program("COUNTERSIGN_TEST_CHROMEDRIVER", "chromedriver"))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("starting chromedriver");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < PATIENCE,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ChromeDriver { child, port }
    }

    async fn browser(&self, profile: &Path) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": program("COUNTERSIGN_TEST_CHROMIUM", "chromium"),
                // The machine has no network: without these Chromium keeps trying to reach
                // Google's services.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=1400,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The text of the first element matching `css`, or "" when there is none.
async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until `css` matches an element.
async fn wait_for(browser: &Client, css: &str) {
    let started = Instant::now();
    while browser
        .find_all(Locator::Css(css))
        .await
        .map_or(true, |found| found.is_empty())
    {
        assert!(
            started.elapsed() < PATIENCE,
            "`{css}` never appeared; the page shows:\n{}",
            text_of(browser, "body").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the element `css` contains `wanted`.
async fn wait_for_text(browser: &Client, css: &str, wanted: &str) -> String {
    let started = Instant::now();
    loop {
        let text = text_of(browser, css).await;
        if text.contains(wanted) {
            return text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "`{css}` never showed {wanted:?}; it shows:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(browser: &Client, css: &str) {
    wait_for(browser, css).await;
    browser
        .find(Locator::Css(css))
        .await
        .expect("found")
        .click()
        .await
        .unwrap_or_else(|error| panic!("clicking `{css}`: {error}"));
}

async fn act_as(browser: &Client, person: &str) {
    click(browser, &format!("#users button[data-user=\"{person}\"]")).await;
    wait_for_text(browser, "#who", &format!("you are @{person}")).await;
}

async fn sessions_left(data_dir: &Path) -> i64 {
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("demo.db"))
        .read_only(true)
        .connect()
        .await
        .expect("the demo database");
    sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&mut connection)
        .await
        .expect("counting sessions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_needing_two_approvals_is_reviewed_in_the_browser() {
    let scratch = common::scratch_dir("dev-console");
    let data_dir = scratch.join("data");
    let dev = DevServer::start(common::dev_args(&data_dir))
        .await
        .expect("countersign dev starts on its defaults");
    let before = sessions_left(&data_dir).await;
    assert!(before > 0, "the demo has sessions to delete");

    let driver = ChromeDriver::start().await;
    let browser = driver.browser(&scratch.join("chromium")).await;
    browser
        .goto(&format!("http://{}/", dev.address))
        .await
        .expect("opening the console");

    // Alice asks to delete every session.
    act_as(&browser, "alice").await;
    let composer = browser
        .find(Locator::Css("#composer"))
        .await
        .expect("the composer");
    composer
        .send_keys("/query DELETE FROM sessions")
        .await
        .expect("typing");
    click(&browser, "#send").await;
    let card = "#messages .card[data-state=\"awaiting_approval\"]";
    wait_for(&browser, card).await;
    let card_text = text_of(&browser, card).await;
    for shown in [
        "Awaiting approval",
        "DELETE FROM sessions",
        "@alice",
        "2 approvals from dba",
        "changes every row of the table",
    ] {
        assert!(
            card_text.contains(shown),
            "the card lacks {shown:?}:\n{card_text}"
        );
    }
    let request = browser
        .find(Locator::Css(card))
        .await
        .expect("card")
        .attr("data-request")
        .await
        .expect("attribute")
        .expect("the card names its request");
    // Her private confirmation, seen by her only.
    wait_for_text(&browser, "#messages", "It is posted for review").await;
    let root = browser
        .find(Locator::Css("#messages .msg:has(.card)"))
        .await
        .expect("the card's message")
        .attr("data-message-id")
        .await
        .expect("attribute")
        .expect("an id");
    let approve =
        format!("#messages button[data-reaction=\"white_check_mark\"][data-message=\"{root}\"]");

    // Her own approval does not count.
    click(&browser, &approve).await;
    click(
        &browser,
        &format!("#messages button.replies[data-thread=\"{root}\"]"),
    )
    .await;
    wait_for_text(
        &browser,
        "#thread-messages",
        "@alice, your own approval does not count",
    )
    .await;
    assert!(
        text_of(&browser, card).await.contains("Awaiting approval"),
        "the request still waits"
    );

    // Bob approves: one more is needed.
    act_as(&browser, "bob").await;
    assert!(
        !text_of(&browser, "#messages")
            .await
            .contains("It is posted for review"),
        "alice's private answer is not shown to bob"
    );
    click(&browser, &approve).await;
    wait_for_text(&browser, "#thread-messages", "@bob approved. Still needed").await;

    // Carol approves: the executor runs it, the result and the audit line arrive in the thread.
    act_as(&browser, "carol").await;
    click(&browser, &approve).await;
    let thread = wait_for_text(&browser, "#thread-messages", "rows affected").await;
    assert!(
        thread.contains("Approved by @bob and @carol"),
        "the quorum note:\n{thread}"
    );
    assert!(
        thread.contains(&format!("Succeeded on demo: {before} rows affected")),
        "the result:\n{thread}"
    );
    assert!(thread.contains("Audit #"), "the audit line:\n{thread}");
    let done = wait_for_text(
        &browser,
        "#messages .card[data-state=\"succeeded\"]",
        "Succeeded",
    )
    .await;
    assert!(done.contains(&request), "the same request's card: {done}");
    assert!(
        done.contains("@bob, @carol"),
        "the approvers on the card: {done}"
    );
    assert_eq!(sessions_left(&data_dir).await, 0, "the sessions are gone");

    let screenshot = browser.screenshot().await.expect("a screenshot");
    let path = std::env::var_os("COUNTERSIGN_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png"));
    std::fs::write(&path, screenshot).expect("saving the screenshot");
    eprintln!("screenshot of the console: {}", path.display());

    browser.close().await.ok();
    drop(driver);
    dev.shutdown().await;
    std::fs::remove_dir_all(&scratch).ok();
}
