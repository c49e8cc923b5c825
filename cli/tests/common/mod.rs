//! Running the `countersign` binary as a user or a script would.
//!
//! Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `countersign` with `args`, feeding `stdin` (if any) and collecting its output.
pub fn countersign(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the countersign binary runs");
    // Feed stdin from another thread: a large input would otherwise fill the output pipe while
    // this thread is still writing, and both sides would wait forever.
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.unwrap_or("").to_string();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("countersign finishes");
    match writer.join().expect("the stdin writer does not panic") {
        Ok(()) => {}
        // A command that fails on its arguments exits without reading stdin.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => panic!("writing stdin failed: {error}"),
    }
    output
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

/// A directory of this test's own under the system's temporary directory (not created).
pub fn scratch_dir(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "countersign-{what}-{}-{}",
        std::process::id(),
        countersign_control::now_ms()
    ))
}

/// `countersign dev` on its defaults, on a free loopback port, starting fresh in `data_dir`.
pub fn dev_args(data_dir: &std::path::Path) -> countersign_cli::dev_cmd::DevArgs {
    countersign_cli::dev_cmd::DevArgs {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        fresh: true,
        policy: None,
        control_database_url: None,
        queue_url: None,
        targets: Vec::new(),
        users: Vec::new(),
        preflight_seconds: 2.0,
    }
}
