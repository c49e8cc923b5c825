//! `countersign`: the command line for people and CI. Behaviour lives in the library.
#![forbid(unsafe_code)]

// Classifying a corpus allocates many small AST nodes; mimalloc is markedly faster at that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    countersign_cli::run(std::env::args_os())
}
