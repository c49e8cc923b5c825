//! Running one verified statement on a target database, under guards.
//!
//! [`TargetDb`] wraps one driver (PostgreSQL, MySQL/MariaDB, SQLite). Every driver follows the
//! same rules (DESIGN.md section 4): prepared execution of the single statement only, reads in a
//! read-only transaction, writes in a transaction with a row guard, a statement timeout, results
//! streamed (the first rows kept and masked, the rest counted up to a cap). The caller has
//! already verified, re-classified and claimed the job; this module trusts none of that and
//! still refuses multi-statement input.
//!
//! Shared choices:
//! - The statement is prepared before it runs (every driver prepares it anyway, so no extra
//!   round trip): its columns name the result even when no row comes back, and the mask is
//!   asked once, before any row is read. Masked cells are never decoded.
//! - Read mode refuses DDL, privilege and admin statements: MySQL commits implicitly before
//!   them, so no read-only transaction contains them there.
//! - A statement that may leave state in the session (settings, variables, prepared
//!   statements, unknown functions) gets its connection closed afterwards instead of pooled.
//! - A read that hits the count cap abandons the rest of its result: PostgreSQL and MySQL
//!   connections are then closed rather than drained; SQLite's worker stops on its own.
//!
//! Layout: `postgres`, `mysql`, `sqlite` (one driver each), `values` (values as text).

pub mod mysql;
pub mod postgres;
pub mod sqlite;
mod values;

use std::time::Duration;

use countersign_shared::policy::Driver;
use countersign_shared::sql::{classify, Category, ClassifyOptions, Dialect, Flag, StatementClass};
use countersign_shared::summary::{Cell, ResultTable};
use futures_util::{Stream, TryStreamExt};
use sqlx::Either;

/// How a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In a read-only transaction, always rolled back.
    Read,
    /// In a read-write transaction, committed unless the row guard trips.
    Write,
}

/// The limits one execution runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The database aborts the statement after this long.
    pub statement_timeout: Duration,
    /// A write touching more rows than this is rolled back.
    pub row_limit: u64,
    /// Rows kept for the summary.
    pub keep_rows: usize,
    /// Rows counted before counting stops (the statement is then cancelled).
    pub count_cap: u64,
}

/// What happened to a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// It ran (and a write committed).
    Done {
        /// Rows affected, for statements that report it (writes).
        rows_affected: Option<u64>,
        /// The kept rows and the count, when the statement returned columns.
        table: Option<ResultTable>,
    },
    /// The write touched more rows than allowed and was rolled back.
    RolledBack {
        /// Rows the statement touched before the roll-back.
        rows_affected: u64,
        /// The limit it exceeded.
        row_limit: u64,
    },
}

/// Why a statement did not run to completion. `Display` is short and safe for chat: it names
/// what failed without connection strings or internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// Refused before reaching the database (e.g. more than one statement).
    #[error("refused: {0}")]
    Refused(String),
    /// The statement ran longer than the timeout and was cancelled.
    #[error("the statement was cancelled after the {0:?} timeout")]
    Timeout(Duration),
    /// The database rejected the statement (the database's own message, e.g. a syntax error,
    /// a missing table, a read-only transaction violation).
    #[error("the database refused the statement: {0}")]
    Database(String),
    /// The database could not be reached or the connection broke.
    #[error("the target database is unavailable: {0}")]
    Unavailable(String),
}

/// A row estimate from the database's planner, for reviewers.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// The planner's estimate of the rows the statement returns or touches.
    pub rows: Option<u64>,
    /// Things reviewers should know, e.g. cascading foreign keys or triggers on a written table
    /// that the row guard cannot see.
    pub notes: Vec<String>,
}

/// Decides, from the result's column names in order, which columns to mask (the executor passes
/// its `MaskPlan`'s `columns_to_mask`). Called once per result, before any row is read.
pub type MaskColumns<'a> = dyn Fn(&[&str]) -> Vec<bool> + Send + Sync + 'a;

/// One target database.
pub enum TargetDb {
    /// PostgreSQL.
    Postgres(postgres::PgTarget),
    /// MySQL or MariaDB.
    MySql(mysql::MySqlTarget),
    /// SQLite (a file).
    Sqlite(sqlite::SqliteTarget),
}

impl TargetDb {
    /// A pool of up to `max_connections` on the target at `url`, with the `driver` the policy
    /// gives it (lazy: nothing is connected yet). A URL of another driver is refused.
    pub async fn connect(
        driver: Driver,
        url: &str,
        max_connections: u32,
    ) -> Result<Self, ExecError> {
        Ok(match driver {
            Driver::Postgres => {
                TargetDb::Postgres(postgres::PgTarget::connect(url, max_connections).await?)
            }
            Driver::Mysql => {
                TargetDb::MySql(mysql::MySqlTarget::connect(url, max_connections).await?)
            }
            Driver::Sqlite => {
                TargetDb::Sqlite(sqlite::SqliteTarget::connect(url, max_connections).await?)
            }
        })
    }

    /// Runs one statement.
    pub async fn run(
        &self,
        sql: &str,
        mode: Mode,
        limits: &Limits,
        mask: &MaskColumns<'_>,
    ) -> Result<Executed, ExecError> {
        match self {
            TargetDb::Postgres(db) => db.run(sql, mode, limits, mask).await,
            TargetDb::MySql(db) => db.run(sql, mode, limits, mask).await,
            TargetDb::Sqlite(db) => db.run(sql, mode, limits, mask).await,
        }
    }

    /// Estimates the rows a statement would touch or return, without running it.
    pub async fn estimate(
        &self,
        sql: &str,
        written_tables: &[String],
        timeout: Duration,
    ) -> Result<Estimate, ExecError> {
        match self {
            TargetDb::Postgres(db) => db.estimate(sql, written_tables, timeout).await,
            TargetDb::MySql(db) => db.estimate(sql, written_tables, timeout).await,
            TargetDb::Sqlite(db) => db.estimate(sql, written_tables, timeout).await,
        }
    }

    /// Checks the database answers (for readiness).
    pub async fn ping(&self) -> Result<(), ExecError> {
        match self {
            TargetDb::Postgres(db) => db.ping().await,
            TargetDb::MySql(db) => db.ping().await,
            TargetDb::Sqlite(db) => db.ping().await,
        }
    }
}

/// Refuses a connection URL whose scheme is not one of `accepted` (compared without regard to
/// case), naming the driver the policy gives the target. sqlx parses any URL as options of the
/// driver it is handed and connects lazily, so without this a `postgres://` URL given to a MySQL
/// target would start an executor that speaks the wrong protocol and is never ready. Only the
/// scheme is quoted back: the rest of the URL holds credentials.
pub fn check_url_scheme(url: &str, driver: &str, accepted: &[&str]) -> Result<(), ExecError> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
        .filter(|scheme| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
    match scheme {
        Some(scheme) if accepted.contains(&scheme.as_str()) => Ok(()),
        Some(scheme) => Err(ExecError::Unavailable(format!(
            "the policy's driver for this target is {driver}, but its URL starts with `{scheme}:`; \
             use a {} URL",
            accepted.join("/")
        ))),
        None => Err(ExecError::Unavailable(format!(
            "the target's URL has no scheme; use a {} URL ({driver})",
            accepted.join("/")
        ))),
    }
}

/// How much longer than the statement timeout a run may take before the executor stops waiting
/// for the database (the backstop behind the database's own timeout), then cancels the statement
/// and discards the connection.
pub const BACKSTOP_MARGIN: Duration = Duration::from_millis(500);

/// How long a run waits for a pooled connection before calling the target unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements each connection keeps. User SQL rarely repeats, so a small cache is
/// enough; it bounds what each session holds on the server.
const STATEMENT_CACHE: usize = 32;

/// The name the executor's sessions carry, so a DBA can find them.
pub const APPLICATION_NAME: &str = "countersign-executor";

/// The statement timeout as the database is told it: at least 1 ms, since 0 means "no limit"
/// to PostgreSQL and MySQL.
fn timeout_millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The whole run's deadline: the statement timeout plus [`BACKSTOP_MARGIN`].
fn backstop(timeout: Duration) -> Duration {
    timeout.saturating_add(BACKSTOP_MARGIN)
}

/// Classifies `sql` and returns its single statement, or refuses it: more than one statement, or
/// anything the classifier could not read.
fn single_statement(sql: &str, dialect: Dialect) -> Result<StatementClass, ExecError> {
    let classification = classify(sql, dialect, &ClassifyOptions::default());
    if let Some(error) = classification.error {
        return Err(ExecError::Refused(format!(
            "the statement could not be classified: {error}"
        )));
    }
    let count = classification.statements.len();
    let mut statements = classification.statements.into_iter();
    let class = match (statements.next(), count) {
        (Some(class), 1) => class,
        _ => {
            return Err(ExecError::Refused(format!(
                "exactly one statement runs at a time; this input has {count}"
            )))
        }
    };
    if class.flags.contains(&Flag::MultiStatement) {
        return Err(ExecError::Refused(
            "exactly one statement runs at a time".to_string(),
        ));
    }
    Ok(class)
}

/// [`single_statement`], plus, in read mode, [`refuse_outside_read_only`].
fn statement_for(sql: &str, dialect: Dialect, mode: Mode) -> Result<StatementClass, ExecError> {
    let class = single_statement(sql, dialect)?;
    if mode == Mode::Read {
        refuse_outside_read_only(&class, dialect)?;
    }
    Ok(class)
}

/// Statements a read-only transaction cannot hold. DDL, privilege and admin statements act
/// outside the transaction on some engines (MySQL commits implicitly before DDL, so a
/// `DROP TABLE` escapes `START TRANSACTION READ ONLY`; PostgreSQL's admin functions such as
/// `pg_terminate_backend` ignore it), so read mode refuses them everywhere. On MySQL/MariaDB,
/// statements that end the transaction implicitly are refused as well.
fn refuse_outside_read_only(class: &StatementClass, dialect: Dialect) -> Result<(), ExecError> {
    if matches!(
        class.category,
        Category::Ddl | Category::Privilege | Category::Admin
    ) {
        return Err(ExecError::Refused(format!(
            "a {} statement cannot run in a read-only transaction",
            class.category
        )));
    }
    const MYSQL_IMPLICIT_COMMIT: &[&str] = &[
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "CALL",
        "LOCK TABLE",
        "LOCK TABLES",
        "UNLOCK TABLES",
        "LOAD DATA",
        "RENAME TABLE",
        "TRUNCATE",
        "OPTIMIZE TABLE",
        "ANALYZE",
        "FLUSH",
    ];
    let verb = class.verbs.first().map(String::as_str).unwrap_or("");
    if dialect == Dialect::Mysql && MYSQL_IMPLICIT_COMMIT.contains(&verb) {
        return Err(ExecError::Refused(format!(
            "MySQL/MariaDB ends the transaction before {verb}, so it cannot run in a read-only transaction"
        )));
    }
    Ok(())
}

/// Whether the session may carry state from the statement after the run (settings, variables,
/// prepared statements, attached databases): then the connection is closed instead of going
/// back to the pool, so the next job starts from the pinned session.
fn leaves_session_state(class: &StatementClass) -> bool {
    !matches!(class.category, Category::Read | Category::Write)
        || class.flags.iter().any(|flag| {
            matches!(
                flag,
                Flag::SideEffectFunction
                    | Flag::UnknownFunction
                    | Flag::VariableAssignment
                    | Flag::Prepare
            )
        })
}

/// Asks the mask once for a result's columns. A mask that answers for the wrong number of
/// columns fails closed: columns it did not answer for are masked.
fn mask_columns(mask: &MaskColumns<'_>, columns: &[String]) -> Vec<bool> {
    if columns.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut masked = mask(&names);
    masked.resize(columns.len(), true);
    masked
}

/// What streaming one statement's results produced.
struct Consumed {
    /// The kept rows and the count, when the statement returned columns.
    table: Option<ResultTable>,
    /// Rows the statement returned, counted up to where counting stopped.
    returned: u64,
    /// Rows affected, summed over the results the driver reported (None when it reported none).
    affected: Option<u64>,
    /// How many statement results the driver reported; more than one means the driver ran
    /// more than one statement.
    results: usize,
    /// Whether counting stopped before the stream ended (the rest of the result is abandoned).
    stopped_early: bool,
}

impl Consumed {
    /// The rows a write touched, as far as the row guard can see: rows affected, or rows
    /// returned when that is more (a writable CTE reports the outer SELECT's count).
    fn touched(&self) -> u64 {
        self.affected.unwrap_or(0).max(self.returned)
    }
}

/// Streams a statement's results: keeps the first `keep_rows` rows (masked columns are never
/// decoded), counts the rest without converting them, and stops at the count cap. In write
/// mode counting goes on past the cap until the row guard trips, so a commit never happens
/// without the full count.
async fn consume<S, Q, R>(
    stream: S,
    columns: Vec<String>,
    masked: Vec<bool>,
    mode: Mode,
    limits: &Limits,
    affected_of: impl Fn(&Q) -> u64,
    render: impl Fn(&R, usize) -> Cell,
) -> Result<Consumed, sqlx::Error>
where
    S: Stream<Item = Result<Either<Q, R>, sqlx::Error>>,
{
    let stop_at = match mode {
        Mode::Read => limits.count_cap,
        Mode::Write => limits.count_cap.max(limits.row_limit.saturating_add(1)),
    };
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    let mut returned = 0u64;
    let mut affected: Option<u64> = None;
    let mut results = 0usize;
    let mut stopped_early = false;
    while let Some(item) = stream.try_next().await? {
        match item {
            Either::Left(result) => {
                results += 1;
                affected = Some(affected.unwrap_or(0).saturating_add(affected_of(&result)));
            }
            Either::Right(row) => {
                if returned >= stop_at {
                    stopped_early = true;
                    break;
                }
                returned += 1;
                if rows.len() < limits.keep_rows {
                    rows.push(
                        masked
                            .iter()
                            .enumerate()
                            .map(|(i, &masked)| {
                                if masked {
                                    Cell::Masked
                                } else {
                                    render(&row, i)
                                }
                            })
                            .collect(),
                    );
                }
            }
        }
    }
    let table = (!columns.is_empty() || returned > 0).then(|| ResultTable {
        columns,
        masked,
        rows,
        total_rows: returned.min(limits.count_cap),
        total_capped: stopped_early || returned > limits.count_cap,
    });
    Ok(Consumed {
        table,
        returned,
        affected,
        results,
        stopped_early,
    })
}

/// What a write's row guard decided.
enum Verdict {
    /// Commit, and report this.
    Commit(Executed),
    /// Roll back, and report this.
    RollBack(Executed),
}

/// The row guard: a write that touched more rows than allowed is rolled back.
fn row_guard(consumed: Consumed, limits: &Limits) -> Verdict {
    let touched = consumed.touched();
    if consumed.stopped_early || touched > limits.row_limit {
        Verdict::RollBack(Executed::RolledBack {
            rows_affected: touched,
            row_limit: limits.row_limit,
        })
    } else {
        Verdict::Commit(Executed::Done {
            rows_affected: Some(touched),
            table: consumed.table,
        })
    }
}

/// Maps a sqlx error to what the caller reports. Database errors carry the database's own
/// message; `is_timeout` recognises the driver's "statement cancelled by the timeout" codes.
/// Connection problems never carry the connection URL.
fn map_error(
    error: sqlx::Error,
    timeout: Duration,
    is_timeout: impl Fn(&dyn sqlx::error::DatabaseError) -> bool,
) -> ExecError {
    match error {
        sqlx::Error::Database(db) if is_timeout(db.as_ref()) => ExecError::Timeout(timeout),
        sqlx::Error::Database(db) => ExecError::Database(db.message().to_string()),
        sqlx::Error::Io(io) => ExecError::Unavailable(format!("connection failed: {io}")),
        sqlx::Error::PoolTimedOut => {
            ExecError::Unavailable("no database connection became free in time".to_string())
        }
        sqlx::Error::PoolClosed => {
            ExecError::Unavailable("the connection pool is closed".to_string())
        }
        sqlx::Error::Tls(_) => ExecError::Unavailable("the TLS handshake failed".to_string()),
        sqlx::Error::Configuration(_) => {
            ExecError::Unavailable("the connection settings are invalid".to_string())
        }
        sqlx::Error::WorkerCrashed => {
            ExecError::Unavailable("the SQLite worker thread stopped".to_string())
        }
        sqlx::Error::Protocol(message) => {
            ExecError::Unavailable(format!("protocol error: {message}"))
        }
        sqlx::Error::RowNotFound => ExecError::Database("the database returned no row".to_string()),
        other => ExecError::Unavailable(format!("unexpected driver error: {other}")),
    }
}

/// The written tables to look up for an estimate: the caller's, then the classifier's, once each.
fn tables_to_check(written_tables: &[String], class: &StatementClass) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    let from_class = class.tables_written.iter().map(|t| t.as_str().to_string());
    for table in written_tables.iter().cloned().chain(from_class) {
        if !table.is_empty() && !tables.contains(&table) {
            tables.push(table);
        }
    }
    tables
}

/// Refuses estimate input the database would run rather than plan.
fn refuse_explain_analyze(class: &StatementClass) -> Result<(), ExecError> {
    if class.flags.contains(&Flag::ExplainAnalyze)
        || class.verbs.first().is_some_and(|verb| verb == "EXPLAIN")
    {
        return Err(ExecError::Refused(
            "send the statement itself for an estimate, not EXPLAIN (EXPLAIN ANALYZE runs it)"
                .to_string(),
        ));
    }
    Ok(())
}

/// The note for a written table's triggers.
fn trigger_note(table: &str, triggers: &[String]) -> Option<String> {
    (!triggers.is_empty()).then(|| {
        format!(
            "{table} has triggers ({}); rows they write are not counted by the row guard",
            triggers.join(", ")
        )
    })
}

/// The note for a foreign key whose actions reach into another table.
fn cascade_note(table: &str, referencing: &str, constraint: &str, actions: &[String]) -> String {
    format!(
        "{table} is referenced by {referencing} with {} ({constraint}); rows changed there are not counted by the row guard",
        actions.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_of_the_driver_is_accepted_whatever_its_case() {
        let postgres = ["postgres", "postgresql"];
        assert!(check_url_scheme("postgres://u:p@h/db", "PostgreSQL", &postgres).is_ok());
        assert!(check_url_scheme("PostgreSQL://h/db", "PostgreSQL", &postgres).is_ok());
        assert!(check_url_scheme("sqlite::memory:", "SQLite", &["sqlite"]).is_ok());
        assert!(check_url_scheme("sqlite:///var/demo.db", "SQLite", &["sqlite"]).is_ok());
        assert!(check_url_scheme("mariadb://h/db", "MySQL", &["mysql", "mariadb"]).is_ok());
    }

    #[test]
    fn another_drivers_url_is_refused_naming_only_the_scheme() {
        let refusal =
            check_url_scheme("postgres://app:secret@db/x", "MySQL", &["mysql", "mariadb"])
                .expect_err("a PostgreSQL URL for a MySQL target");
        let text = refusal.to_string();
        assert!(
            text.contains("driver for this target is MySQL")
                && text.contains("`postgres:`")
                && text.contains("mysql/mariadb"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_url_without_a_scheme_is_refused() {
        for url in ["/var/lib/demo.db", "", "db.internal/x", "://h/db"] {
            let refusal = check_url_scheme(url, "SQLite", &["sqlite"]).expect_err(url);
            assert!(
                refusal.to_string().contains("no scheme"),
                "{url}: {refusal}"
            );
        }
    }
}
