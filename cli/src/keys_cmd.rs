//! `countersign keys generate`: the Ed25519 key pair that signs approved jobs.
//!
//! The signing key goes to the bot only (a Secret); the public key to every executor.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use countersign_shared::job::JobSigner;

/// Key subcommands.
#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Write a new key pair: NAME.key (the bot's signing key, mode 0600) and NAME.pub (the
    /// executors' public key). Existing files are never overwritten.
    Generate {
        /// Folder to write the two files into.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// File name stem.
        #[arg(long, default_value = "countersign-signing")]
        name: String,
    },
    /// Make a service token for the bot's automation endpoint. Prints the token (give it to the
    /// service, once) and the line to add to the bot's service token file (only its SHA-256 is
    /// stored). The service must hold a role in the policy as `service:<NAME>`.
    ServiceToken {
        /// The service's name, as in `service:<NAME>`.
        name: String,
    },
}

pub(crate) fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::ServiceToken { name } => {
            if countersign_shared::policy::Principal::new(
                countersign_shared::policy::PrincipalKind::Service,
                &name,
            )
            .is_err()
            {
                eprintln!("error: `{name}` is not a service name: use letters, digits, '.', '_', '-' or '@'");
                return ExitCode::from(crate::EXIT_FILE);
            }
            let mut bytes = [0u8; 32];
            if let Err(error) = getrandom::fill(&mut bytes) {
                eprintln!("error: the operating system's random source failed: {error}");
                return ExitCode::from(crate::EXIT_FILE);
            }
            let token = format!("cst_{}", hex::encode(bytes));
            let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
                token.as_bytes(),
            ));
            println!("token (give it to the service once; it is not stored): {token}");
            println!("add this line to the bot's service token file:");
            println!("{name} sha256:{}", hex::encode(digest));
            ExitCode::SUCCESS
        }
        KeysCommand::Generate { out_dir, name } => match generate(&out_dir, &name) {
            Ok((secret, public)) => {
                println!(
                    "signing key (give it to the bot only): {}",
                    secret.display()
                );
                println!(
                    "public key (give it to every executor): {}",
                    public.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                crate::report(&error);
                ExitCode::from(crate::EXIT_FILE)
            }
        },
    }
}

fn generate(out_dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))?;
    let signer = JobSigner::from_seed(seed);
    let secret_path = out_dir.join(format!("{name}.key"));
    let public_path = out_dir.join(format!("{name}.pub"));
    for path in [&secret_path, &public_path] {
        anyhow::ensure!(
            !path.exists(),
            "{} already exists; move it away or choose another --name (keys are never overwritten)",
            path.display()
        );
    }
    write_new(&secret_path, &signer.to_text(), true)?;
    write_new(&public_path, &signer.verifier().to_text(), false)?;
    Ok((secret_path, public_path))
}

/// Creates a file that must not exist yet; secret files are readable by their owner only.
fn write_new(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}
