//! SQLite (a file): reads run on connections opened read-only (`SQLITE_OPEN_READONLY`) with
//! `PRAGMA query_only = ON`, inside a transaction that is rolled back; writes run on a separate
//! single-connection pool in `BEGIN IMMEDIATE`, committed unless the row guard trips.
//!
//! sqlx's SQLite driver runs every `;`-separated part of its input, so multi-statement input is
//! refused before it gets there; as a second wall, a run whose driver reports more than one
//! statement result is rolled back and refused.
//!
//! Timeouts: SQLite has no statement timeout of its own. Each run installs a progress handler
//! (sqlx's safe `LockedSqliteHandle::set_progress_handler`) that interrupts the statement once
//! the deadline passes, so a runaway query really stops (the error is `SQLITE_INTERRUPT`). It
//! cannot interrupt a wait for a lock, which `PRAGMA busy_timeout` (set to the statement
//! timeout) bounds instead; the tokio backstop covers anything else.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_shared::sql::Dialect;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
};
use sqlx::{Column, Connection, Executor, Row, Sqlite, Statement};

use super::{
    backstop, cascade_note, consume, map_error, mask_columns, refuse_explain_analyze, row_guard,
    single_statement, statement_for, tables_to_check, timeout_millis, trigger_note, values,
    Estimate, ExecError, Executed, Limits, MaskColumns, Mode, Verdict, ACQUIRE_TIMEOUT,
    STATEMENT_CACHE,
};

/// Virtual machine instructions between two looks at the deadline.
const PROGRESS_OPS: i32 = 1_000;

/// SQLite's result code for an interrupted statement.
const SQLITE_INTERRUPT: &str = "9";

/// How long a session waits for another writer's lock before the first run sets its own.
const CONNECT_BUSY_TIMEOUT_MS: u64 = 5_000;

/// A SQLite target: a read-only pool for reads and estimates, a one-connection pool for writes
/// (SQLite has one writer at a time anyway).
pub struct SqliteTarget {
    /// Connections opened read-only, with `query_only` on.
    read: SqlitePool,
    /// The writer.
    write: SqlitePool,
}

/// Clears the deadline check when a run ends, however it ends (even when its future is
/// dropped), so the handler left on the pooled connection never interrupts later work.
struct DeadlineGuard(Arc<AtomicBool>);

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl SqliteTarget {
    /// A target for `url` (e.g. `sqlite:///var/db/app.sqlite`). Connections open on first use;
    /// each gets `PRAGMA foreign_keys = ON` and a busy timeout, read connections also
    /// `PRAGMA query_only = ON`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ExecError> {
        super::check_url_scheme(url, "SQLite", &["sqlite"])?;
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| {
                ExecError::Unavailable("the SQLite connection URL is invalid".to_string())
            })?
            .statement_cache_capacity(STATEMENT_CACHE);
        let read = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        format!(
                            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {CONNECT_BUSY_TIMEOUT_MS}; \
                             PRAGMA query_only = ON"
                        )
                        .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options.clone().read_only(true).create_if_missing(false));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        format!(
                            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {CONNECT_BUSY_TIMEOUT_MS}"
                        )
                        .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(SqliteTarget { read, write })
    }

    /// Runs one statement (see the module docs).
    pub async fn run(
        &self,
        sql: &str,
        mode: Mode,
        limits: &Limits,
        mask: &MaskColumns<'_>,
    ) -> Result<Executed, ExecError> {
        let class = statement_for(sql, Dialect::Sqlite, mode)?;
        let pool = match mode {
            Mode::Read => &self.read,
            Mode::Write => &self.write,
        };
        let timeout = limits.statement_timeout;
        let mut conn = acquire(pool).await?;
        let _deadline = set_deadline(&mut conn, timeout).await?;
        let outcome = tokio::time::timeout(
            backstop(timeout),
            run_on(&mut conn, sql, mode, limits, mask),
        )
        .await;
        match outcome {
            Ok(result) => {
                // An interrupted statement leaves a healthy connection; any other failure
                // may not, and a fresh one is cheap.
                let healthy = matches!(result, Ok(_) | Err(ExecError::Timeout(_)));
                if !healthy || super::leaves_session_state(&class) {
                    conn.close_on_drop();
                }
                result
            }
            Err(_elapsed) => {
                conn.close_on_drop();
                Err(ExecError::Timeout(timeout))
            }
        }
    }

    /// SQLite gives no row estimate; `EXPLAIN QUERY PLAN` (on a read-only connection) checks
    /// that the statement parses and its tables exist. Notes name cascading foreign keys and
    /// triggers of the written tables.
    pub async fn estimate(
        &self,
        sql: &str,
        written_tables: &[String],
        timeout: Duration,
    ) -> Result<Estimate, ExecError> {
        let class = single_statement(sql, Dialect::Sqlite)?;
        refuse_explain_analyze(&class)?;
        let tables = tables_to_check(written_tables, &class);
        let mut conn = acquire(&self.read).await?;
        let _deadline = set_deadline(&mut conn, timeout).await?;
        let work = async {
            let explain = format!("EXPLAIN QUERY PLAN\n{sql}");
            sqlx::query(&explain)
                .persistent(false)
                .fetch_all(&mut *conn)
                .await?;
            let mut notes = Vec::new();
            for table in &tables {
                notes.extend(table_notes(&mut conn, table).await?);
            }
            Ok::<_, sqlx::Error>(Estimate { rows: None, notes })
        };
        match tokio::time::timeout(backstop(timeout), work).await {
            Ok(result) => result.map_err(|error| sqlite_error(error, timeout)),
            Err(_elapsed) => {
                conn.close_on_drop();
                Err(ExecError::Timeout(timeout))
            }
        }
    }

    /// `SELECT 1` on a read connection (which also checks the file can be opened).
    pub async fn ping(&self) -> Result<(), ExecError> {
        let work = async {
            let mut conn = self.read.acquire().await?;
            sqlx::query("SELECT 1").fetch_one(&mut *conn).await?;
            Ok::<_, sqlx::Error>(())
        };
        match tokio::time::timeout(ACQUIRE_TIMEOUT, work).await {
            Ok(result) => result.map_err(|error| sqlite_error(error, ACQUIRE_TIMEOUT)),
            Err(_elapsed) => Err(ExecError::Unavailable(
                "SQLite did not answer in time".to_string(),
            )),
        }
    }
}

async fn acquire(pool: &SqlitePool) -> Result<PoolConnection<Sqlite>, ExecError> {
    pool.acquire()
        .await
        .map_err(|error| sqlite_error(error, ACQUIRE_TIMEOUT))
}

/// Installs the progress handler that interrupts whatever runs past `timeout` from now, and
/// sets the busy timeout to match. The returned guard switches the handler off.
async fn set_deadline(
    conn: &mut SqliteConnection,
    timeout: Duration,
) -> Result<DeadlineGuard, ExecError> {
    let active = Arc::new(AtomicBool::new(true));
    let deadline = Instant::now() + timeout;
    let check = Arc::clone(&active);
    conn.lock_handle()
        .await
        .map_err(|error| sqlite_error(error, timeout))?
        .set_progress_handler(PROGRESS_OPS, move || {
            !check.load(Ordering::Relaxed) || Instant::now() < deadline
        });
    let busy = format!("PRAGMA busy_timeout = {}", timeout_millis(timeout));
    conn.execute(busy.as_str())
        .await
        .map_err(|error| sqlite_error(error, timeout))?;
    Ok(DeadlineGuard(active))
}

/// The run itself, on one connection.
async fn run_on(
    conn: &mut SqliteConnection,
    sql: &str,
    mode: Mode,
    limits: &Limits,
    mask: &MaskColumns<'_>,
) -> Result<Executed, ExecError> {
    let timeout = limits.statement_timeout;
    let fail = move |error: sqlx::Error| sqlite_error(error, timeout);
    let begin = match mode {
        Mode::Read => {
            // Again on every read: a previous statement may have switched it off.
            conn.execute("PRAGMA query_only = ON").await.map_err(fail)?;
            "BEGIN"
        }
        Mode::Write => "BEGIN IMMEDIATE",
    };
    let mut tx = conn.begin_with(begin).await.map_err(fail)?;

    let statement = (&mut *tx).prepare(sql).await.map_err(fail)?;
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|column| column.name().to_string())
        .collect();
    let masked = mask_columns(mask, &columns);
    let consumed = {
        let stream = (&mut *tx).fetch_many(statement.query());
        consume(
            stream,
            columns,
            masked,
            mode,
            limits,
            SqliteQueryResult::rows_affected,
            values::sqlite_cell,
        )
        .await
        .map_err(fail)?
    };
    if consumed.results > 1 {
        tx.rollback().await.map_err(fail)?;
        return Err(ExecError::Refused(
            "the driver ran more than one statement; nothing was kept".to_string(),
        ));
    }

    match mode {
        Mode::Read => {
            // Dropping the stream early already stopped the statement (sqlx's worker stops
            // when nobody reads its rows), so the roll-back is immediate.
            tx.rollback().await.map_err(fail)?;
            Ok(Executed::Done {
                rows_affected: None,
                table: consumed.table,
            })
        }
        Mode::Write => match row_guard(consumed, limits) {
            Verdict::Commit(executed) => {
                tx.commit().await.map_err(fail)?;
                Ok(executed)
            }
            Verdict::RollBack(executed) => {
                tx.rollback().await.map_err(fail)?;
                Ok(executed)
            }
        },
    }
}

/// Notes on one written table: foreign keys (from any table) that cascade from it, and its
/// triggers. SQLite names tables without a schema here; a `main.` prefix is ignored.
async fn table_notes(conn: &mut SqliteConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    let name = table.rsplit('.').next().unwrap_or(table);
    let mut notes = Vec::new();
    let keys = sqlx::query(
        "SELECT m.name, f.\"from\", f.on_delete, f.on_update \
         FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
         WHERE m.type = 'table' AND f.seq = 0 AND f.\"table\" = ?1 COLLATE NOCASE \
           AND (f.on_delete IN ('CASCADE', 'SET NULL', 'SET DEFAULT') \
                OR f.on_update IN ('CASCADE', 'SET NULL', 'SET DEFAULT')) \
         ORDER BY 1, 2",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    for key in keys {
        let referencing: String = key.try_get(0)?;
        let column: String = key.try_get(1)?;
        let on_delete: String = key.try_get(2)?;
        let on_update: String = key.try_get(3)?;
        let actions: Vec<String> = [("ON DELETE", on_delete), ("ON UPDATE", on_update)]
            .into_iter()
            .filter(|(_, rule)| matches!(rule.as_str(), "CASCADE" | "SET NULL" | "SET DEFAULT"))
            .map(|(event, rule)| format!("{event} {rule}"))
            .collect();
        notes.push(cascade_note(
            table,
            &referencing,
            &format!("{referencing}.{column}"),
            &actions,
        ));
    }
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master \
         WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE ORDER BY name",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    notes.extend(trigger_note(table, &triggers));
    Ok(notes)
}

fn sqlite_error(error: sqlx::Error, timeout: Duration) -> ExecError {
    map_error(error, timeout, |db| {
        db.code().as_deref() == Some(SQLITE_INTERRUPT) || db.message() == "interrupted"
    })
}
