//! `countersign sql classify`: what a statement does, as text, JSON or JSON Lines.

use std::io::{self, BufRead, BufWriter, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use countersign_shared::sql::{
    classify, Classification, ClassifyOptions, Dialect, StatementClass, TableName,
    DEFAULT_MAX_INPUT_BYTES,
};

/// SQL subcommands.
#[derive(Subcommand)]
pub(crate) enum SqlCommand {
    /// Classify SQL read from standard input (or given as an argument).
    ///
    /// Exit status: 0 when the input was classified, 1 when it could not be (text and json
    /// formats), 3 on usage errors, 4 when the input cannot be read.
    Classify {
        /// The target's dialect: postgres, mysql, sqlite or generic.
        #[arg(long, default_value = "postgres", value_parser = parse_dialect)]
        dialect: Dialect,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Input: plain SQL, or JSON Lines with a field `sql` on each line (output is then one
        /// JSON object per input line, in order).
        #[arg(long, value_enum, default_value_t = Input::Sql)]
        input: Input,
        /// Refuse SQL larger than this many bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_INPUT_BYTES)]
        max_bytes: usize,
        /// Worker threads for JSON Lines input (default: one per core).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        /// The SQL; read from standard input when absent.
        sql: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Input {
    Sql,
    Jsonl,
}

fn parse_dialect(name: &str) -> Result<Dialect, String> {
    Dialect::parse(name).ok_or_else(|| {
        format!("unknown dialect '{name}': expected one of postgres, mysql, sqlite, generic")
    })
}

pub(crate) fn run(command: SqlCommand) -> ExitCode {
    match command {
        SqlCommand::Classify {
            dialect,
            format,
            input,
            max_bytes,
            jobs,
            sql,
        } => {
            let options = ClassifyOptions {
                max_input_bytes: max_bytes,
                ..ClassifyOptions::default()
            };
            let result = match input {
                Input::Sql => classify_text(sql, dialect, format, &options),
                Input::Jsonl => {
                    let workers = jobs.map_or_else(
                        || std::thread::available_parallelism().map_or(1, |n| n.get()),
                        usize::from,
                    );
                    classify_jsonl(sql, dialect, &options, workers).map(|()| ExitCode::SUCCESS)
                }
            };
            result.unwrap_or_else(|error| {
                crate::report(&error);
                ExitCode::from(crate::EXIT_FILE)
            })
        }
    }
}

fn classify_text(
    sql: Option<String>,
    dialect: Dialect,
    format: Format,
    options: &ClassifyOptions,
) -> anyhow::Result<ExitCode> {
    let sql = match sql {
        Some(sql) if sql != "-" => sql,
        _ => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .context("failed to read SQL from standard input")?;
            text
        }
    };
    let classification = classify(&sql, dialect, options);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &classification.to_json())?;
            writeln!(out)?;
        }
        Format::Text => write_text(&mut out, &classification)?,
    }
    Ok(if classification.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes a classification for a person to read.
pub(crate) fn write_text(out: &mut impl Write, c: &Classification) -> io::Result<()> {
    if let Some(error) = &c.error {
        writeln!(out, "category: unknown")?;
        writeln!(out, "error: {error}")?;
        return Ok(());
    }
    writeln!(out, "category: {}", c.category)?;
    write_statements(out, &c.statements, "")
}

/// Writes each statement's classification, every line starting with `indent`.
pub(crate) fn write_statements(
    out: &mut impl Write,
    statements: &[StatementClass],
    indent: &str,
) -> io::Result<()> {
    let list = |tables: &[TableName]| {
        if tables.is_empty() {
            "-".to_string()
        } else {
            tables
                .iter()
                .map(TableName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for (i, s) in statements.iter().enumerate() {
        writeln!(out, "{indent}statement {}: {}", i + 1, s.category)?;
        writeln!(out, "{indent}  verbs: {}", s.verbs.join(", "))?;
        writeln!(out, "{indent}  tables read: {}", list(&s.tables_read))?;
        writeln!(out, "{indent}  tables written: {}", list(&s.tables_written))?;
        if let Some(has_where) = s.has_where {
            writeln!(
                out,
                "{indent}  where: {}",
                if has_where { "yes" } else { "no" }
            )?;
        }
        if !s.flags.is_empty() {
            let flags: Vec<&str> = s.flags.iter().map(|f| f.as_str()).collect();
            writeln!(out, "{indent}  flags: {}", flags.join(", "))?;
        }
        for reason in &s.reasons {
            writeln!(out, "{indent}  why: {reason}")?;
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct JsonlLine {
    sql: String,
}

/// Lines classified per batch; each batch is split across the available cores.
const BATCH_LINES: usize = 2048;
/// Stack for worker threads: deep statements then rarely need a stack grown just for them.
const WORKER_STACK: usize = 64 * 1024 * 1024;

fn classify_jsonl(
    path_or_dash: Option<String>,
    dialect: Dialect,
    options: &ClassifyOptions,
    workers: usize,
) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match path_or_dash.as_deref() {
        None | Some("-") => Box::new(io::stdin().lock()),
        Some(path) => Box::new(io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("failed to open {path}"))?,
        )),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut lines = reader.lines();
    let mut first_line = 1;
    loop {
        let mut batch = Vec::with_capacity(BATCH_LINES);
        for line in lines.by_ref().take(BATCH_LINES) {
            batch.push(line.context("failed to read JSON Lines input")?);
        }
        if batch.is_empty() {
            break;
        }
        // Output keeps input order: each worker takes a contiguous slice and returns its bytes.
        let part = batch.len().div_ceil(workers);
        let outputs = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(part)
                .enumerate()
                .map(|(i, chunk)| {
                    let start = first_line + i * part;
                    std::thread::Builder::new()
                        .stack_size(WORKER_STACK)
                        .spawn_scoped(scope, move || {
                            classify_lines(chunk, start, dialect, options)
                        })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .context("failed to start a worker thread")?
                        .join()
                        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?
                })
                .collect::<anyhow::Result<Vec<Vec<u8>>>>()
        })?;
        for bytes in outputs {
            out.write_all(&bytes).context("failed to write output")?;
        }
        first_line += batch.len();
    }
    out.flush().context("failed to write output")?;
    Ok(())
}

/// Classifies JSON Lines; `first_line` numbers the first one in error messages.
fn classify_lines(
    lines: &[String],
    first_line: usize,
    dialect: Dialect,
    options: &ClassifyOptions,
) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(lines.len() * 160);
    for (offset, line) in lines.iter().enumerate() {
        match serde_json::from_str::<JsonlLine>(line) {
            Ok(JsonlLine { sql }) => {
                serde_json::to_writer(&mut out, &classify(&sql, dialect, options).as_public())?
            }
            Err(error) => serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "ok": false,
                    "error": format!(
                        "line {}: expected a JSON object with a string field \"sql\": {error}",
                        first_line + offset
                    ),
                    "category": "unknown",
                    "statements": [],
                }),
            )?,
        }
        out.push(b'\n');
    }
    Ok(out)
}
