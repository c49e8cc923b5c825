//! The `countersign` command line: classify SQL, check and test policies, manage keys, verify
//! the audit trail, and try the whole flow locally (`countersign dev`).
//!
//! Layout:
//! - `sql_cmd`: `countersign sql classify`, text, JSON and JSON Lines output.
//! - `policy_cmd`: `countersign policy check` and `countersign policy test`.
//! - `keys_cmd`: `countersign keys generate`, the job-signing key pair.
//! - `dev_cmd`: `countersign dev`, the bot, executors and the local console in one process.
//! - `audit_cmd`: `countersign audit verify` and `countersign audit export`, against the control
//!   database.
//!
//! Exit codes: 0 success (or "allow"), 1 "needs approval" or a failed check, 2 "deny",
//! 3 usage errors, 4 unreadable or invalid files, 5 the control database cannot be reached.
#![forbid(unsafe_code)]

mod audit_cmd;
pub mod dev_cmd;
mod keys_cmd;
mod policy_cmd;
mod sql_cmd;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for usage errors (bad flags, unknown dialect).
pub const EXIT_USAGE: u8 = 3;
/// Exit status for files that cannot be read or are invalid.
pub const EXIT_FILE: u8 = 4;

#[derive(Parser)]
#[command(
    name = "countersign",
    version,
    about = "Run SQL against production from chat, safely."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with SQL text.
    #[command(subcommand)]
    Sql(sql_cmd::SqlCommand),
    /// Check and test policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Manage the key pair that signs approved jobs.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Verify and export the audit trail.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Try the whole flow locally: bot, executor and a chat console in the browser.
    Dev(dev_cmd::DevArgs),
}

/// Runs the CLI with the given arguments (the first is the program name) and returns its exit
/// status.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Sql(command) => sql_cmd::run(command),
        Command::Policy(command) => policy_cmd::run(command),
        Command::Keys(command) => keys_cmd::run(command),
        Command::Audit(command) => audit_cmd::run(command),
        Command::Dev(args) => dev_cmd::run(args),
    }
}

/// Prints an error with its causes to stderr, in the form `countersign: error: ...`.
pub(crate) fn report(error: &anyhow::Error) {
    eprintln!("countersign: error: {error:#}");
}
