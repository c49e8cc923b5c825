//! The README's first command as a process: `countersign dev` prints where its console is,
//! serves it, and stops cleanly (exit 0) on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

#[test]
fn countersign_dev_prints_its_address_serves_the_console_and_stops_on_sigterm() {
    let data_dir = common::scratch_dir("dev-process");
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("COUNTERSIGN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting countersign dev");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, banner) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut printed = Vec::new();
    let address = loop {
        let line = banner
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no console address printed; got {printed:?}"));
        if let Some(rest) = line.trim().strip_prefix("Countersign dev console: http://") {
            break rest.trim_end_matches('/').to_string();
        }
        printed.push(line);
    };
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    // The page and the workspace answer.
    let get = |path: &str| -> String {
        let mut stream = std::net::TcpStream::connect(&address).expect("the console answers");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>Countersign console</title>"));
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "the page may load nothing from elsewhere"
    );
    let workspace = get("/console/api/workspace");
    assert!(workspace.contains("\"name\":\"alice\""), "{workspace}");
    assert!(get("/readyz").starts_with("HTTP/1.1 200"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exited = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "countersign dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut errors = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut errors).ok();
    }
    assert!(exited.success(), "exit {exited:?}; stderr:\n{errors}");
    assert!(!errors.contains("panicked"), "{errors}");
    assert!(
        data_dir.join("control.db").exists() && data_dir.join("demo.db").exists(),
        "the SQLite control store and the demo target are in the data directory"
    );
    std::fs::remove_dir_all(&data_dir).ok();
}
