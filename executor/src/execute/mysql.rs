//! MySQL and MariaDB: the user's statement runs as a prepared statement (the binary protocol,
//! which takes exactly one statement), inside `START TRANSACTION READ ONLY` for reads (always
//! rolled back) or `START TRANSACTION READ WRITE` for writes (committed unless the row guard
//! trips).
//!
//! Every run first re-pins the session (`sql_mode` without ANSI_QUOTES or NO_BACKSLASH_ESCAPES,
//! since the classifier reads quotes the default way; `autocommit = 1`) and sets the statement
//! timeout: MariaDB's `max_statement_time` covers every statement; MySQL's `max_execution_time`
//! covers only SELECT, so the run is also bounded by a tokio timeout that then sends
//! `KILL QUERY` from a connection of its own.
//!
//! MySQL commits implicitly before DDL and some other statements, so neither a read-only
//! transaction nor the row guard's roll-back contain them: read mode refuses them (see
//! `refuse_outside_read_only`), and in write mode the guard only protects DML.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use countersign_shared::sql::{Dialect, Flag};
use sqlx::mysql::{
    MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions,
    MySqlQueryResult, MySqlRow,
};
use sqlx::pool::PoolConnection;
use sqlx::{Column, Connection, Executor, MySql, Row, Statement};

use super::{
    backstop, cascade_note, consume, map_error, mask_columns, refuse_explain_analyze, row_guard,
    single_statement, statement_for, tables_to_check, timeout_millis, trigger_note, values,
    Estimate, ExecError, Executed, Limits, MaskColumns, Mode, Verdict, ACQUIRE_TIMEOUT,
    STATEMENT_CACHE,
};

/// The session's SQL mode: strict, and without ANSI_QUOTES or NO_BACKSLASH_ESCAPES, which would
/// make the server read quotes differently from the classifier.
pub const SQL_MODE: &str = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

/// Error numbers that mean the statement was stopped by a timeout or by our `KILL QUERY`:
/// MariaDB's max_statement_time, MySQL's max_execution_time, and "query interrupted".
const TIMEOUT_ERRORS: [u16; 3] = [1969, 3024, 1317];

/// A MySQL or MariaDB target: a lazy pool whose sessions are pinned on connect and again
/// before every run.
pub struct MySqlTarget {
    /// The pool every run takes its connection from.
    pool: MySqlPool,
    /// The same settings, for the one-off connection that kills a runaway statement.
    options: MySqlConnectOptions,
}

/// What one run produced, and whether its connection must not be reused.
struct Ran {
    executed: Executed,
    /// The result was abandoned mid-stream: the connection still has rows in flight.
    abandoned: bool,
}

impl MySqlTarget {
    /// A target for `url`. Connections open on first use; each new session gets the pinned
    /// `sql_mode` and `autocommit = 1`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ExecError> {
        super::check_url_scheme(url, "MySQL", &["mysql", "mariadb"])?;
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|_| ExecError::Unavailable("the MySQL connection URL is invalid".to_string()))?
            .pipes_as_concat(false)
            .statement_cache_capacity(STATEMENT_CACHE);
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(pin_session_sql(None).as_str()).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options.clone());
        Ok(MySqlTarget { pool, options })
    }

    /// Runs one statement (see the module docs).
    pub async fn run(
        &self,
        sql: &str,
        mode: Mode,
        limits: &Limits,
        mask: &MaskColumns<'_>,
    ) -> Result<Executed, ExecError> {
        let class = statement_for(sql, Dialect::Mysql, mode)?;
        let mut conn = self.acquire().await?;
        let connection_id = AtomicU64::new(0);
        let timeout = limits.statement_timeout;
        let outcome = tokio::time::timeout(
            backstop(timeout),
            run_on(&mut conn, &connection_id, sql, mode, limits, mask),
        )
        .await;
        match outcome {
            Ok(Ok(ran)) => {
                if ran.abandoned || super::leaves_session_state(&class) {
                    conn.close_on_drop();
                }
                Ok(ran.executed)
            }
            Ok(Err(error)) => {
                if super::leaves_session_state(&class) {
                    conn.close_on_drop();
                }
                Err(mysql_error(error, timeout))
            }
            Err(_elapsed) => {
                conn.close_on_drop();
                self.kill_query(connection_id.load(Ordering::Relaxed)).await;
                Err(ExecError::Timeout(timeout))
            }
        }
    }

    /// The optimizer's row estimate from `EXPLAIN`: for DELETE, UPDATE, INSERT and REPLACE the
    /// rows examined in the written table (explained in a read-write transaction that is rolled
    /// back, since MariaDB will not explain DML in a read-only one); otherwise the product of the
    /// rows examined per table of the top-level query block (an upper bound for joins),
    /// explained in a read-only transaction. Notes name cascading foreign keys and triggers of
    /// the written tables.
    pub async fn estimate(
        &self,
        sql: &str,
        written_tables: &[String],
        timeout: Duration,
    ) -> Result<Estimate, ExecError> {
        let class = single_statement(sql, Dialect::Mysql)?;
        refuse_explain_analyze(&class)?;
        let tables = tables_to_check(written_tables, &class);
        let writes = class.verbs.first().is_some_and(|verb| {
            matches!(verb.as_str(), "DELETE" | "UPDATE" | "INSERT" | "REPLACE")
        });
        // MariaDB refuses to EXPLAIN a DELETE or UPDATE in a read-only transaction, so DML is
        // explained in a read-write one that is rolled back; EXPLAIN does not run it. Function
        // calls may still be evaluated while planning, so DML that calls anything not known to
        // be side-effect free gets no estimate.
        let risky = class.flags.iter().any(|flag| {
            matches!(
                flag,
                Flag::SideEffectFunction
                    | Flag::UnknownFunction
                    | Flag::VariableAssignment
                    | Flag::SelectInto
            )
        });
        let mut conn = self.acquire().await?;
        let work = async {
            start_session(&mut conn, timeout).await?;
            let begin = if writes {
                "START TRANSACTION READ WRITE"
            } else {
                "START TRANSACTION READ ONLY"
            };
            let mut tx = conn.begin_with(begin).await?;
            let mut notes = Vec::new();
            let rows = if writes && risky {
                notes.push(
                    "no row estimate: the statement calls functions that may have side effects"
                        .to_string(),
                );
                None
            } else {
                let explain = format!("EXPLAIN {sql}");
                let plan = sqlx::query(&explain)
                    .persistent(false)
                    .fetch_all(&mut *tx)
                    .await?;
                let written: Vec<&str> = if writes {
                    tables
                        .iter()
                        .map(|t| t.rsplit('.').next().unwrap_or(t))
                        .collect()
                } else {
                    Vec::new()
                };
                explain_rows(&plan, &written)
            };
            for table in &tables {
                notes.extend(table_notes(&mut tx, table).await?);
            }
            tx.rollback().await?;
            Ok::<_, sqlx::Error>(Estimate { rows, notes })
        };
        match tokio::time::timeout(backstop(timeout), work).await {
            Ok(result) => result.map_err(|error| mysql_error(error, timeout)),
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
            Ok(result) => result.map_err(|error| mysql_error(error, ACQUIRE_TIMEOUT)),
            Err(_elapsed) => Err(ExecError::Unavailable(
                "MySQL did not answer in time".to_string(),
            )),
        }
    }

    async fn acquire(&self) -> Result<PoolConnection<MySql>, ExecError> {
        self.pool
            .acquire()
            .await
            .map_err(|error| mysql_error(error, ACQUIRE_TIMEOUT))
    }

    /// Stops whatever connection `id` is running, from a connection of its own. Best effort:
    /// the run's connection is discarded either way.
    async fn kill_query(&self, id: u64) {
        if id == 0 {
            return;
        }
        let kill = async {
            let mut conn = MySqlConnection::connect_with(&self.options).await?;
            conn.execute(format!("KILL QUERY {id}").as_str()).await?;
            conn.close().await
        };
        match tokio::time::timeout(ACQUIRE_TIMEOUT, kill).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(id, %error, "could not kill a timed-out statement"),
            Err(_) => tracing::warn!(id, "killing a timed-out statement took too long"),
        }
    }
}

/// The statement that pins a session, with the statement timeout when one is given.
fn pin_session_sql(timeout: Option<&str>) -> String {
    let mut sql = format!("SET SESSION sql_mode = '{SQL_MODE}', SESSION autocommit = 1");
    if let Some(timeout) = timeout {
        sql.push_str(", SESSION ");
        sql.push_str(timeout);
    }
    sql
}

/// Re-pins the session and sets the statement timeout for the server it is (MariaDB or MySQL,
/// from `VERSION()`). Returns the connection id, for `KILL QUERY`.
async fn start_session(conn: &mut MySqlConnection, timeout: Duration) -> Result<u64, sqlx::Error> {
    let row = sqlx::query("SELECT CAST(CONNECTION_ID() AS UNSIGNED), VERSION()")
        .fetch_one(&mut *conn)
        .await?;
    let id: u64 = row.try_get(0)?;
    let version: String = row.try_get(1)?;
    let millis = timeout_millis(timeout);
    let setting = if version.to_ascii_lowercase().contains("mariadb") {
        format!(
            "max_statement_time = {}.{:03}",
            millis / 1000,
            millis % 1000
        )
    } else {
        format!("max_execution_time = {millis}")
    };
    conn.execute(pin_session_sql(Some(&setting)).as_str())
        .await?;
    Ok(id)
}

/// The run itself, on one connection.
async fn run_on(
    conn: &mut PoolConnection<MySql>,
    connection_id: &AtomicU64,
    sql: &str,
    mode: Mode,
    limits: &Limits,
    mask: &MaskColumns<'_>,
) -> Result<Ran, sqlx::Error> {
    let id = start_session(conn, limits.statement_timeout).await?;
    connection_id.store(id, Ordering::Relaxed);
    let begin = match mode {
        Mode::Read => "START TRANSACTION READ ONLY",
        Mode::Write => "START TRANSACTION READ WRITE",
    };
    let mut tx = conn.begin_with(begin).await?;

    let statement = (&mut *tx).prepare(sql).await?;
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
            MySqlQueryResult::rows_affected,
            values::mysql_cell,
        )
        .await?
    };

    match mode {
        Mode::Read => {
            let abandoned = consumed.stopped_early;
            if !abandoned {
                tx.rollback().await?;
            }
            // Abandoned: closing the connection stops the statement without reading the rest.
            Ok(Ran {
                executed: Executed::Done {
                    rows_affected: None,
                    table: consumed.table,
                },
                abandoned,
            })
        }
        Mode::Write => match row_guard(consumed, limits) {
            Verdict::Commit(executed) => {
                tx.commit().await?;
                Ok(Ran {
                    executed,
                    abandoned: false,
                })
            }
            Verdict::RollBack(executed) => {
                tx.rollback().await?;
                Ok(Ran {
                    executed,
                    abandoned: false,
                })
            }
        },
    }
}

/// One line of EXPLAIN output.
struct PlanLine {
    id: Option<u64>,
    table: Option<String>,
    rows: Option<u64>,
}

fn explain_rows(plan: &[MySqlRow], written: &[&str]) -> Option<u64> {
    let lines: Vec<PlanLine> = plan
        .iter()
        .map(|row| PlanLine {
            id: number(row, "id"),
            table: text(row, "table"),
            rows: number(row, "rows"),
        })
        .collect();
    let top_id = lines.first()?.id;
    let top: Vec<&PlanLine> = lines.iter().filter(|line| line.id == top_id).collect();
    let written_line = top.iter().find(|line| {
        line.table
            .as_deref()
            .is_some_and(|table| written.contains(&table))
    });
    if let Some(line) = written_line {
        return line.rows;
    }
    let mut product: Option<u64> = None;
    for rows in top.iter().filter_map(|line| line.rows) {
        product = Some(product.unwrap_or(1).saturating_mul(rows));
    }
    product
}

/// A column that holds a number, whatever integer or text type the server sent it as.
fn number(row: &MySqlRow, column: &str) -> Option<u64> {
    if let Ok(value) = row.try_get::<Option<u64>, _>(column) {
        return value;
    }
    if let Ok(value) = row.try_get::<Option<i64>, _>(column) {
        return value.and_then(|n| u64::try_from(n).ok());
    }
    text(row, column).and_then(|s| s.trim().parse::<f64>().ok().map(|n| n.max(0.0) as u64))
}

/// A column that holds text, sent as text or as bytes.
fn text(row: &MySqlRow, column: &str) -> Option<String> {
    if let Ok(value) = row.try_get::<Option<String>, _>(column) {
        return value;
    }
    row.try_get_unchecked::<Option<Vec<u8>>, _>(column)
        .ok()
        .flatten()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Notes on one written table: foreign keys that cascade into other tables, and triggers.
async fn table_notes(conn: &mut MySqlConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    let (schema, name) = match table.rsplit_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, table),
    };
    let mut notes = Vec::new();
    let keys = sqlx::query(
        "SELECT CONSTRAINT_NAME AS name, TABLE_NAME AS referencing, \
                DELETE_RULE AS on_delete, UPDATE_RULE AS on_update \
         FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE UNIQUE_CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) \
           AND REFERENCED_TABLE_NAME = ? \
           AND (DELETE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT') \
                OR UPDATE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT')) \
         ORDER BY TABLE_NAME, CONSTRAINT_NAME",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    for key in &keys {
        let actions: Vec<String> = [("ON DELETE", "on_delete"), ("ON UPDATE", "on_update")]
            .into_iter()
            .filter_map(|(event, column)| {
                let rule = text(key, column)?;
                matches!(rule.as_str(), "CASCADE" | "SET NULL" | "SET DEFAULT")
                    .then(|| format!("{event} {rule}"))
            })
            .collect();
        notes.push(cascade_note(
            table,
            &text(key, "referencing").unwrap_or_default(),
            &text(key, "name").unwrap_or_default(),
            &actions,
        ));
    }
    let triggers: Vec<String> = sqlx::query(
        "SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS \
         WHERE EVENT_OBJECT_SCHEMA = COALESCE(?, DATABASE()) AND EVENT_OBJECT_TABLE = ? \
         ORDER BY TRIGGER_NAME",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .filter_map(|row| text(row, "name"))
    .collect();
    notes.extend(trigger_note(table, &triggers));
    Ok(notes)
}

fn mysql_error(error: sqlx::Error, timeout: Duration) -> ExecError {
    map_error(error, timeout, |db| {
        db.try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|db| TIMEOUT_ERRORS.contains(&db.number()))
    })
}
