//! `countersign audit verify` and `countersign audit export`: the audit trail in the control
//! database, checked and streamed.
//!
//! `verify` recomputes every record's hash and link in sequence order and compares the chain's
//! end with the head the store recorded; it names each edited, removed or reordered record.
//! `export --format jsonl` writes the stored records, one JSON object per line, as they were
//! sealed (so `verify` on a copy gives the same hashes).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use countersign_control::audit_log;
use countersign_control::store::{Backend, ControlStore, StoreError};

/// Exit status when the control database cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 5;

/// `countersign audit ...`
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: every record, every link, the order and the head.
    Verify(Connection),
    /// Stream the audit trail.
    Export {
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

/// Where the control database is.
#[derive(Args)]
pub struct Connection {
    /// The control PostgreSQL's URL.
    #[arg(long, env = "COUNTERSIGN_CONTROL_DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// Export formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

/// Runs an audit command.
pub fn run(command: AuditCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            crate::report(&anyhow::Error::new(error).context("starting the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match command {
            AuditCommand::Verify(connection) => verify(&connection).await,
            AuditCommand::Export { connection, format } => export(&connection, format).await,
        }
    })
}

/// Opens the control store without migrating it: PostgreSQL as before, or a SQLite file
/// (`countersign dev`'s store).
async fn connect(connection: &Connection) -> anyhow::Result<ControlStore> {
    let url = &connection.database_url;
    if matches!(Backend::of_url(url), Ok(Backend::Sqlite)) {
        return ControlStore::open(url, 1)
            .await
            .context("opening the control database");
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(url)
        .await
        .context("connecting to the control database")?;
    Ok(ControlStore::from_pool(pool))
}

async fn verify(connection: &Connection) -> ExitCode {
    let store = match connect(connection).await {
        Ok(store) => store,
        Err(error) => {
            crate::report(&error);
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let report = match audit_log::verify(&store).await {
        Ok(report) => report,
        Err(error) => {
            crate::report(&anyhow::Error::new(error).context("reading the audit trail"));
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let head = &report.head[..report.head.len().min(16)];
    if report.holds() {
        println!("audit trail holds: {} records, head {head}", report.records);
        ExitCode::SUCCESS
    } else {
        println!(
            "audit trail BROKEN: {} records read, {} problems:",
            report.records,
            report.breaks.len()
        );
        for problem in &report.breaks {
            println!("  - {problem}");
        }
        ExitCode::from(1)
    }
}

async fn export(connection: &Connection, format: ExportFormat) -> ExitCode {
    let ExportFormat::Jsonl = format;
    let store = match connect(connection).await {
        Ok(store) => store,
        Err(error) => {
            crate::report(&error);
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = audit_log::for_each_record_line(&store, |line| {
        writeln!(out, "{line}").map_err(|error| StoreError::Sealer(format!("writing: {error}")))
    })
    .await;
    let flushed = out.flush();
    match (result, flushed) {
        (Ok(_), Ok(())) => ExitCode::SUCCESS,
        (Err(StoreError::Sealer(message)), _) if message.contains("Broken pipe") => {
            ExitCode::SUCCESS
        }
        (Err(error), _) => {
            crate::report(&anyhow::Error::new(error).context("exporting the audit trail"));
            ExitCode::from(EXIT_UNREACHABLE)
        }
        (Ok(_), Err(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        (Ok(_), Err(error)) => {
            crate::report(&anyhow::Error::new(error).context("writing the export"));
            ExitCode::FAILURE
        }
    }
}
