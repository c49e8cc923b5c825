//! `countersign`: the command line for people and CI. Behaviour lives in the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    countersign_cli::run(std::env::args_os())
}
