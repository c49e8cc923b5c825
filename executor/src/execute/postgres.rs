//! PostgreSQL: the user's statement runs through the extended protocol only, inside a
//! transaction that reads are opened read-only and always rolled back.
//!
//! Read: `BEGIN READ ONLY`, `SET LOCAL statement_timeout`, then `SELECT pg_backend_pid()` before
//! the user's statement (`SET TRANSACTION READ WRITE` is allowed until the transaction's first
//! query, so a query must come first), the statement, `ROLLBACK`. Write: `BEGIN`, the same
//! timeout, the statement, then `COMMIT`, or `ROLLBACK` when the row guard trips.
//!
//! The statement is prepared before it runs (sqlx prepares every statement anyway, so this costs
//! no extra round trip); the prepared statement's columns give the result's column names even
//! when no row comes back, and the mask is asked before any row is read.

use std::str::FromStr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use countersign_shared::sql::Dialect;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{Column, Connection, Executor, Postgres, Row, Statement};

use super::{
    backstop, cascade_note, consume, map_error, mask_columns, refuse_explain_analyze, row_guard,
    single_statement, statement_for, tables_to_check, timeout_millis, trigger_note, values,
    Estimate, ExecError, Executed, Limits, MaskColumns, Mode, Verdict, ACQUIRE_TIMEOUT,
    APPLICATION_NAME, STATEMENT_CACHE,
};

/// SQLSTATE `query_canceled`: the statement timeout (or our own cancel) stopped the statement.
const QUERY_CANCELED: &str = "57014";

/// A PostgreSQL target: a lazy pool whose sessions are pinned on connect.
pub struct PgTarget {
    /// The pool every run takes its connection from.
    pool: PgPool,
    /// The same settings, for the one-off connection that cancels a runaway statement.
    options: PgConnectOptions,
}

/// What one run produced, and whether its connection must not be reused.
struct Ran {
    executed: Executed,
    /// The result was abandoned mid-stream: the connection still has rows in flight.
    abandoned: bool,
    /// The read's transaction is still open and must be rolled back.
    rollback: bool,
}

impl PgTarget {
    /// A target for `url`. Connections open on first use; each new session gets
    /// `standard_conforming_strings = on` (the classifier reads backslashes in strings that way),
    /// `client_min_messages = warning` and the application name `countersign-executor`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ExecError> {
        super::check_url_scheme(url, "PostgreSQL", &["postgres", "postgresql"])?;
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| {
                ExecError::Unavailable("the PostgreSQL connection URL is invalid".to_string())
            })?
            .application_name(APPLICATION_NAME)
            .statement_cache_capacity(STATEMENT_CACHE);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before each run: the transaction's opening round trip finds a dead
            // connection instead, before anything of the user's was sent, and the run retries it
            // once on a fresh connection.
            .test_before_acquire(false)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "SET standard_conforming_strings = on; \
                         SET client_min_messages = warning; \
                         SET application_name = 'countersign-executor'",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options.clone());
        Ok(PgTarget { pool, options })
    }

    /// Runs one statement (see the module docs).
    pub async fn run(
        &self,
        sql: &str,
        mode: Mode,
        limits: &Limits,
        mask: &MaskColumns<'_>,
    ) -> Result<Executed, ExecError> {
        let class = statement_for(sql, Dialect::Postgres, mode)?;
        let leaves_state = super::leaves_session_state(&class);
        let timeout = limits.statement_timeout;
        let (mut conn, backend) = self.open(mode, timeout).await?;
        let pid = AtomicI32::new(backend);
        let outcome = tokio::time::timeout(
            backstop(timeout),
            run_on(&mut conn, sql, mode, limits, mask),
        )
        .await;
        match outcome {
            Ok(Ok(ran)) => {
                if ran.abandoned || leaves_state {
                    conn.close_on_drop();
                } else if ran.rollback {
                    // The read's result is in hand: end its transaction off the caller's path.
                    // The connection returns to the pool only after the rollback.
                    tokio::spawn(roll_back_and_release(conn));
                }
                Ok(ran.executed)
            }
            Ok(Err(error)) => {
                if leaves_state {
                    conn.close_on_drop();
                }
                Err(pg_error(error, timeout))
            }
            Err(_elapsed) => {
                conn.close_on_drop();
                self.cancel(pid.load(Ordering::Relaxed)).await;
                Err(ExecError::Timeout(timeout))
            }
        }
    }

    /// The planner's row estimate (`EXPLAIN (FORMAT JSON)` in a read-only transaction; for
    /// DELETE and UPDATE the rows of the plan under ModifyTable), and notes on cascading foreign
    /// keys and triggers of the written tables.
    pub async fn estimate(
        &self,
        sql: &str,
        written_tables: &[String],
        timeout: Duration,
    ) -> Result<Estimate, ExecError> {
        let class = single_statement(sql, Dialect::Postgres)?;
        refuse_explain_analyze(&class)?;
        let tables = tables_to_check(written_tables, &class);
        let mut conn = self.acquire().await?;
        let work = async {
            let mut tx = conn.begin_with("BEGIN READ ONLY").await?;
            set_local_timeout(&mut tx, timeout).await?;
            let explain = format!("EXPLAIN (FORMAT JSON)\n{sql}");
            let row = sqlx::query(&explain)
                .persistent(false)
                .fetch_one(&mut *tx)
                .await?;
            let plan: sqlx::types::Json<serde_json::Value> = row.try_get(0)?;
            let mut notes = Vec::new();
            for table in &tables {
                notes.extend(table_notes(&mut tx, table).await?);
            }
            tx.rollback().await?;
            Ok::<_, sqlx::Error>(Estimate {
                rows: plan_rows(&plan.0),
                notes,
            })
        };
        match tokio::time::timeout(backstop(timeout), work).await {
            Ok(result) => result.map_err(|error| pg_error(error, timeout)),
            Err(_elapsed) => {
                conn.close_on_drop();
                Err(ExecError::Timeout(timeout))
            }
        }
    }

    /// `SELECT 1`.
    pub async fn ping(&self) -> Result<(), ExecError> {
        let work = async {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("SELECT 1").fetch_one(&mut *conn).await?;
            Ok::<_, sqlx::Error>(())
        };
        match tokio::time::timeout(ACQUIRE_TIMEOUT, work).await {
            Ok(result) => result.map_err(|error| pg_error(error, ACQUIRE_TIMEOUT)),
            Err(_elapsed) => Err(ExecError::Unavailable(
                "PostgreSQL did not answer in time".to_string(),
            )),
        }
    }

    /// A connection with the run's transaction open (see [`open_transaction`]), and its backend
    /// pid. A connection that turns out dead is replaced once: nothing was sent on it yet.
    async fn open(
        &self,
        mode: Mode,
        timeout: Duration,
    ) -> Result<(PoolConnection<Postgres>, i32), ExecError> {
        let mut conn = self.acquire().await?;
        let opened =
            tokio::time::timeout(ACQUIRE_TIMEOUT, open_transaction(&mut conn, mode, timeout)).await;
        match opened {
            Ok(Ok(pid)) => Ok((conn, pid)),
            Ok(Err(sqlx::Error::Io(_))) => {
                conn.close_on_drop();
                drop(conn);
                let mut conn = self.acquire().await?;
                let pid = open_transaction(&mut conn, mode, timeout)
                    .await
                    .map_err(|error| pg_error(error, timeout))?;
                Ok((conn, pid))
            }
            Ok(Err(error)) => Err(pg_error(error, timeout)),
            Err(_elapsed) => {
                conn.close_on_drop();
                Err(ExecError::Unavailable(
                    "PostgreSQL did not answer in time".to_string(),
                ))
            }
        }
    }

    async fn acquire(&self) -> Result<PoolConnection<Postgres>, ExecError> {
        self.pool
            .acquire()
            .await
            .map_err(|error| pg_error(error, ACQUIRE_TIMEOUT))
    }

    /// Cancels whatever backend `pid` is running, from a connection of its own (the pool may
    /// have none free). Best effort: the connection is discarded either way, which ends the
    /// session once PostgreSQL notices.
    async fn cancel(&self, pid: i32) {
        if pid == 0 {
            return;
        }
        let cancel = async {
            let mut conn = sqlx::PgConnection::connect_with(&self.options).await?;
            sqlx::query("SELECT pg_cancel_backend($1)")
                .bind(pid)
                .execute(&mut conn)
                .await?;
            conn.close().await
        };
        match tokio::time::timeout(ACQUIRE_TIMEOUT, cancel).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(pid, %error, "could not cancel a timed-out statement"),
            Err(_) => tracing::warn!(pid, "cancelling a timed-out statement took too long"),
        }
    }
}

/// Opens the run's transaction in one round trip: `BEGIN [READ ONLY]; SET LOCAL
/// statement_timeout; SELECT pg_backend_pid()`, one simple-protocol batch of our own text (the
/// user's statement never travels that way). The pid query is the transaction's first query:
/// after it, `SET TRANSACTION READ WRITE` is refused.
async fn open_transaction(
    conn: &mut PoolConnection<Postgres>,
    mode: Mode,
    timeout: Duration,
) -> Result<i32, sqlx::Error> {
    let begin = match mode {
        Mode::Read => "BEGIN READ ONLY",
        Mode::Write => "BEGIN",
    };
    let opening = format!(
        "{begin}; SET LOCAL statement_timeout = '{}ms'; SELECT pg_backend_pid()",
        timeout_millis(timeout)
    );
    let connection: &mut sqlx::PgConnection = conn;
    let rows = connection.fetch_all(opening.as_str()).await?;
    match rows.first() {
        Some(row) => row.try_get(0),
        None => Ok(0),
    }
}

/// The run itself, in the open transaction; a read's `ROLLBACK` is left to the caller, which
/// sends it after the result is in hand, off the caller's path.
async fn run_on(
    conn: &mut PoolConnection<Postgres>,
    sql: &str,
    mode: Mode,
    limits: &Limits,
    mask: &MaskColumns<'_>,
) -> Result<Ran, sqlx::Error> {
    let result = statement_in_transaction(conn, sql, mode, limits, mask).await;
    match result {
        Ok(ran) => Ok(ran),
        Err(error) => {
            // Leave no transaction behind on a connection that goes back to the pool.
            let connection: &mut sqlx::PgConnection = conn;
            if connection.execute("ROLLBACK").await.is_err() {
                conn.close_on_drop();
            }
            Err(error)
        }
    }
}

/// Rolls a finished read's transaction back, then lets the connection go back to the pool (or
/// closes it when the rollback fails).
async fn roll_back_and_release(mut conn: PoolConnection<Postgres>) {
    let connection: &mut sqlx::PgConnection = &mut conn;
    if connection.execute("ROLLBACK").await.is_err() {
        conn.close_on_drop();
    }
}

async fn statement_in_transaction(
    conn: &mut PoolConnection<Postgres>,
    sql: &str,
    mode: Mode,
    limits: &Limits,
    mask: &MaskColumns<'_>,
) -> Result<Ran, sqlx::Error> {
    let statement = (&mut **conn).prepare(sql).await?;
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|column| column.name().to_string())
        .collect();
    let masked = mask_columns(mask, &columns);
    let consumed = {
        let stream = (&mut **conn).fetch_many(statement.query());
        consume(
            stream,
            columns,
            masked,
            mode,
            limits,
            PgQueryResult::rows_affected,
            values::pg_cell,
        )
        .await?
    };

    match mode {
        Mode::Read => {
            let abandoned = consumed.stopped_early;
            // Abandoned: the rest of the result is still on its way; the caller closes the
            // connection, which ends the statement without reading it. Otherwise the caller
            // rolls back.
            Ok(Ran {
                executed: Executed::Done {
                    rows_affected: None,
                    table: consumed.table,
                },
                abandoned,
                rollback: !abandoned,
            })
        }
        Mode::Write => match row_guard(consumed, limits) {
            Verdict::Commit(executed) => {
                let connection: &mut sqlx::PgConnection = conn;
                connection.execute("COMMIT").await?;
                Ok(Ran {
                    executed,
                    abandoned: false,
                    rollback: false,
                })
            }
            Verdict::RollBack(executed) => {
                let connection: &mut sqlx::PgConnection = conn;
                connection.execute("ROLLBACK").await?;
                Ok(Ran {
                    executed,
                    abandoned: false,
                    rollback: false,
                })
            }
        },
    }
}

async fn set_local_timeout(
    conn: &mut sqlx::PgConnection,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    let set = format!(
        "SET LOCAL statement_timeout = '{}ms'",
        timeout_millis(timeout)
    );
    conn.execute(set.as_str()).await?;
    Ok(())
}

/// The row estimate in `EXPLAIN (FORMAT JSON)` output: the top plan's rows, or for a
/// ModifyTable (DELETE, UPDATE, INSERT, MERGE) the rows of the plan that feeds it.
fn plan_rows(explain: &serde_json::Value) -> Option<u64> {
    let plan = explain.get(0)?.get("Plan")?;
    let node = if plan.get("Node Type").and_then(|t| t.as_str()) == Some("ModifyTable") {
        plan.get("Plans")
            .and_then(|plans| plans.get(0))
            .unwrap_or(plan)
    } else {
        plan
    };
    let rows = node.get("Plan Rows")?.as_f64()?;
    (rows.is_finite() && rows >= 0.0).then(|| rows.round() as u64)
}

/// Notes on one written table: foreign keys that cascade into other tables, and triggers.
async fn table_notes(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    // The classifier folded the name already; quoting each part keeps it exact.
    let qualified = table
        .split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".");
    let mut notes = Vec::new();
    let keys = sqlx::query(
        "SELECT c.conname::text, c.conrelid::regclass::text, \
                c.confdeltype::text, c.confupdtype::text \
         FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.confrelid = to_regclass($1) \
           AND (c.confdeltype IN ('c', 'n', 'd') OR c.confupdtype IN ('c', 'n', 'd')) \
         ORDER BY 2, 1",
    )
    .bind(&qualified)
    .fetch_all(&mut *conn)
    .await?;
    for key in keys {
        let name: String = key.try_get(0)?;
        let referencing: String = key.try_get(1)?;
        let on_delete: String = key.try_get(2)?;
        let on_update: String = key.try_get(3)?;
        let actions: Vec<String> = [("ON DELETE", on_delete), ("ON UPDATE", on_update)]
            .into_iter()
            .filter_map(|(event, code)| {
                let action = match code.as_str() {
                    "c" => "CASCADE",
                    "n" => "SET NULL",
                    "d" => "SET DEFAULT",
                    _ => return None,
                };
                Some(format!("{event} {action}"))
            })
            .collect();
        notes.push(cascade_note(table, &referencing, &name, &actions));
    }
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT t.tgname::text FROM pg_trigger t \
         WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal ORDER BY 1",
    )
    .bind(&qualified)
    .fetch_all(&mut *conn)
    .await?;
    notes.extend(trigger_note(table, &triggers));
    Ok(notes)
}

fn pg_error(error: sqlx::Error, timeout: Duration) -> ExecError {
    map_error(error, timeout, |db| {
        db.code().as_deref() == Some(QUERY_CANCELED)
    })
}
