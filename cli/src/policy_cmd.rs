//! `countersign policy check` and `countersign policy test`.

use std::process::ExitCode;

use clap::Subcommand;

/// Policy subcommands.
#[derive(Subcommand)]
pub(crate) enum PolicyCommand {}

pub(crate) fn run(command: PolicyCommand) -> ExitCode {
    match command {}
}
