//! `countersign policy check` and `countersign policy test`.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use countersign_shared::policy::{
    format_duration, run_file, Decision, Identity, Outcome, Policy, Principal, Request,
};

/// Policy subcommands.
#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Explain what a policy decides for one request.
    ///
    /// Exit status: 0 allow, 1 needs approval, 2 deny, 3 usage errors, 4 when the policy cannot
    /// be read or is invalid.
    Check {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// The target's name, as in the policy.
        #[arg(long)]
        target: String,
        /// The requester, such as console:alice or slack:U024BE7LH.
        #[arg(long, value_parser = parse_principal)]
        user: Principal,
        /// A chat group of the requester, such as slack-group:S0614TZR7 (repeatable).
        #[arg(long = "group", value_parser = parse_principal)]
        groups: Vec<Principal>,
        /// Rows the statement would touch, as the executor's preflight would estimate.
        #[arg(long)]
        estimated_rows: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// The SQL; read from standard input when absent or `-`.
        sql: Option<String>,
    },
    /// Run policy expectations files (see deploy/policy.example.tests.toml).
    ///
    /// Exit status: 0 when every case passes, 1 when any fails, 4 when a file cannot be read
    /// or is invalid.
    Test {
        /// Expectations files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

fn parse_principal(text: &str) -> Result<Principal, String> {
    Principal::parse(text).map_err(|e| format!("{e} ({})", e.hint()))
}

/// Exit status for "needs approval" and for failed expectations.
const EXIT_NEEDS_APPROVAL: u8 = 1;
/// Exit status for "deny".
const EXIT_DENY: u8 = 2;

pub(crate) fn run(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check {
            policy,
            target,
            user,
            groups,
            estimated_rows,
            format,
            sql,
        } => {
            let policy = match Policy::load(&policy) {
                Ok(policy) => policy,
                Err(error) => return file_error(error.into()),
            };
            let sql = match read_sql(sql) {
                Ok(sql) => sql,
                Err(error) => return file_error(error),
            };
            let requester = Identity::new(user).with_groups(groups);
            let decision = policy.decide(&Request {
                target: &target,
                requester: &requester,
                sql: &sql,
                estimated_rows,
            });
            if let Err(error) = write_decision(&policy, &requester, &decision, format) {
                return file_error(error);
            }
            match decision.outcome {
                Outcome::Allow => ExitCode::SUCCESS,
                Outcome::NeedsApproval(_) => ExitCode::from(EXIT_NEEDS_APPROVAL),
                Outcome::Deny => ExitCode::from(EXIT_DENY),
            }
        }
        PolicyCommand::Test { files } => test(&files),
    }
}

fn file_error(error: anyhow::Error) -> ExitCode {
    crate::report(&error);
    ExitCode::from(crate::EXIT_FILE)
}

fn read_sql(sql: Option<String>) -> anyhow::Result<String> {
    match sql {
        Some(sql) if sql != "-" => Ok(sql),
        _ => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .context("failed to read SQL from standard input")?;
            Ok(text)
        }
    }
}

fn write_decision(
    policy: &Policy,
    requester: &Identity,
    decision: &Decision,
    format: Format,
) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &decision.to_json())?;
            writeln!(out)?;
        }
        Format::Text => write_text(&mut out, policy, requester, decision)?,
    }
    out.flush().context("failed to write output")
}

fn write_text(
    out: &mut impl Write,
    policy: &Policy,
    requester: &Identity,
    decision: &Decision,
) -> io::Result<()> {
    let outcome = match &decision.outcome {
        Outcome::Allow => "allow",
        Outcome::NeedsApproval(_) => "needs approval",
        Outcome::Deny => "deny",
    };
    writeln!(out, "outcome: {outcome}")?;
    for reason in &decision.reasons {
        writeln!(out, "  - {reason}")?;
    }
    let requirements = decision.outcome.requirements();
    if !requirements.is_empty() {
        let ttl = decision
            .outcome
            .approval_ttl()
            .map(format_duration)
            .unwrap_or_default();
        writeln!(
            out,
            "approvals: {} needed, valid for {ttl}",
            decision.outcome.approvals_required()
        )?;
        for r in requirements {
            writeln!(
                out,
                "  - rule '{}': {} ({}, ttl {})",
                r.rule,
                r.describe(),
                r.mode,
                format_duration(r.ttl)
            )?;
        }
    }
    let groups: Vec<String> = requester.groups.iter().map(|g| g.to_string()).collect();
    let roles = if decision.roles.is_empty() {
        "none".to_string()
    } else {
        decision.roles.join(", ")
    };
    write!(out, "requester: {}", requester.principal)?;
    if !groups.is_empty() {
        write!(out, " (groups: {})", groups.join(", "))?;
    }
    writeln!(out, "; roles: {roles}")?;
    match &decision.target {
        Some(t) => writeln!(
            out,
            "target: {} ({}, dialect {}, timeout {})",
            t.name,
            t.driver,
            t.dialect,
            format_duration(t.statement_timeout)
        )?,
        None => writeln!(out, "target: unknown")?,
    }
    if let Some(limit) = decision.row_limit {
        writeln!(out, "row limit: {limit}")?;
    }
    if !decision.matched_rules.is_empty() {
        writeln!(out, "matched rules: {}", decision.matched_rules.join(", "))?;
    }
    let c = &decision.classification;
    match &c.error {
        Some(error) => writeln!(out, "classification: unknown ({error})")?,
        None => writeln!(out, "classification: {}", c.category)?,
    }
    crate::sql_cmd::write_statements(out, &c.statements, "  ")?;
    writeln!(
        out,
        "policy: {} (version {})",
        policy.source(),
        policy.short_version()
    )
}

fn test(files: &[PathBuf]) -> ExitCode {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let (mut passed, mut failed, mut file_errors) = (0usize, 0usize, 0usize);
    for file in files {
        let report = match run_file(file) {
            Ok(report) => report,
            Err(error) => {
                let _ = out.flush();
                crate::report(&error.into());
                file_errors += 1;
                continue;
            }
        };
        let _ = writeln!(out, "{}:", report.source);
        for result in &report.results {
            match &result.failure {
                None => {
                    let _ = writeln!(out, "  ok      {}", result.name);
                }
                Some(failure) => {
                    let _ = writeln!(out, "  FAILED  {}", result.name);
                    for line in failure.lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                }
            }
        }
        passed += report.passed();
        failed += report.failed();
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    let _ = out.flush();
    if file_errors > 0 {
        ExitCode::from(crate::EXIT_FILE)
    } else if failed > 0 {
        ExitCode::from(EXIT_NEEDS_APPROVAL)
    } else {
        ExitCode::SUCCESS
    }
}
