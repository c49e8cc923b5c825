//! Functions known to have side effects, per dialect: the one place this list lives.
//!
//! Each entry names the category the call moves a statement to and why, in words for reviewers.
//! Names are lower case. A name ending in `*` matches every function with that prefix.

use crate::sql::{Category, Dialect};

/// One known side-effect function.
pub(crate) struct SideEffect {
    /// Lower-case name, or a prefix ending in `*`.
    pub name: &'static str,
    /// Dialects in which the function exists.
    pub dialects: &'static [Dialect],
    /// The category a call moves the statement to.
    pub category: Category,
    /// Why, for the reviewer.
    pub why: &'static str,
}

const PG: &[Dialect] = &[Dialect::Postgres, Dialect::Generic];
const MY: &[Dialect] = &[Dialect::Mysql, Dialect::Generic];
const LITE: &[Dialect] = &[Dialect::Sqlite, Dialect::Generic];

macro_rules! se {
    ($d:expr, $c:ident, $why:expr, [$($name:expr),+ $(,)?]) => {
        [$(SideEffect { name: $name, dialects: $d, category: Category::$c, why: $why }),+]
    };
}

/// Every known side-effect function.
pub(crate) fn all() -> impl Iterator<Item = &'static SideEffect> {
    TABLES.iter().flat_map(|t| t.iter())
}

static TABLES: &[&[SideEffect]] = &[
    &se!(
        PG,
        Admin,
        "ends or cancels other sessions",
        ["pg_terminate_backend", "pg_cancel_backend",]
    ),
    &se!(
        PG,
        Admin,
        "reads or lists files on the database server",
        [
            "pg_read_file",
            "pg_read_binary_file",
            "pg_read_file_old",
            "pg_ls_*",
            "pg_stat_file",
            "pg_current_logfile",
            "pg_hba_file_rules",
            "pg_ident_file_mappings",
            "pg_show_all_file_settings",
        ]
    ),
    &se!(
        PG,
        Admin,
        "writes files on the database server",
        [
            "lo_export",
            "pg_file_write",
            "pg_file_rename",
            "pg_file_unlink",
            "pg_file_sync",
            "pg_logdir_ls",
        ]
    ),
    &se!(
        PG,
        Admin,
        "runs SQL text or reads whole tables out of sight of the classifier",
        [
            "query_to_xml",
            "query_to_xmlschema",
            "query_to_xml_and_xmlschema",
            "cursor_to_xml",
            "cursor_to_xmlschema",
            "table_to_xml",
            "table_to_xmlschema",
            "table_to_xml_and_xmlschema",
            "schema_to_xml",
            "schema_to_xmlschema",
            "schema_to_xml_and_xmlschema",
            "database_to_xml",
            "database_to_xmlschema",
            "database_to_xml_and_xmlschema",
            "ts_stat",
            "ts_rewrite",
            "dblink",
            "dblink_exec",
            "dblink_open",
            "dblink_fetch",
            "dblink_send_query",
            "dblink_connect",
            "dblink_connect_u",
            "dblink_get_result",
        ]
    ),
    &se!(
        PG,
        Admin,
        "operates the server (configuration, WAL, backups, replication, statistics)",
        [
            "pg_reload_conf",
            "pg_rotate_logfile",
            "pg_rotate_logfile_old",
            "pg_switch_wal",
            "pg_create_restore_point",
            "pg_promote",
            "pg_backup_start",
            "pg_backup_stop",
            "pg_start_backup",
            "pg_stop_backup",
            "pg_wal_replay_pause",
            "pg_wal_replay_resume",
            "pg_create_physical_replication_slot",
            "pg_create_logical_replication_slot",
            "pg_drop_replication_slot",
            "pg_copy_physical_replication_slot",
            "pg_copy_logical_replication_slot",
            "pg_replication_slot_advance",
            "pg_logical_slot_get_changes",
            "pg_logical_slot_get_binary_changes",
            "pg_logical_emit_message",
            "pg_replication_origin_*",
            "pg_stat_reset*",
            "pg_import_system_collations",
            "pg_log_backend_memory_contexts",
            "binary_upgrade_*",
            "pg_stop_making_pinned_objects",
            "brin_summarize_new_values",
            "brin_summarize_range",
            "brin_desummarize_range",
            "gin_clean_pending_list",
            "pg_prewarm",
            "pg_stat_force_next_flush",
            "pg_extension_config_dump",
            "pg_nextoid",
        ]
    ),
    &se!(
        PG,
        Write,
        "changes data (sequences, large objects, notifications)",
        [
            "nextval",
            "setval",
            "lo_import",
            "lo_create",
            "lo_creat",
            "lo_unlink",
            "lo_from_bytea",
            "lo_put",
            "lo_truncate",
            "lo_truncate64",
            "lowrite",
            "lo_open",
            "pg_notify",
        ]
    ),
    &se!(
        PG,
        Session,
        "changes the session (settings, locks held, snapshots, sleeping)",
        [
            "set_config",
            "setseed",
            "pg_advisory_lock",
            "pg_advisory_lock_shared",
            "pg_advisory_xact_lock",
            "pg_advisory_xact_lock_shared",
            "pg_try_advisory_lock",
            "pg_try_advisory_lock_shared",
            "pg_try_advisory_xact_lock",
            "pg_try_advisory_xact_lock_shared",
            "pg_advisory_unlock",
            "pg_advisory_unlock_shared",
            "pg_advisory_unlock_all",
            "pg_sleep",
            "pg_sleep_for",
            "pg_sleep_until",
            "pg_export_snapshot",
            "pg_stat_clear_snapshot",
            "lo_close",
            "lo_lseek",
            "lo_lseek64",
            "loread",
            "lo_tell",
            "lo_tell64",
        ]
    ),
    &se!(
        MY,
        Admin,
        "reads files on the database server",
        ["load_file"]
    ),
    &se!(
        MY,
        Session,
        "changes the session (locks held, sleeping, replication waits)",
        [
            "sleep",
            "benchmark",
            "get_lock",
            "release_lock",
            "release_all_locks",
            "master_pos_wait",
            "source_pos_wait",
            "master_gtid_wait",
            "wait_for_executed_gtid_set",
            "wait_until_sql_thread_after_gtids",
        ]
    ),
    &se!(
        MY,
        Write,
        "changes data (sequences)",
        ["nextval", "setval", "lastval"]
    ),
    &se!(
        LITE,
        Admin,
        "loads native code into the database server",
        ["load_extension", "fts3_tokenizer",]
    ),
    &se!(
        LITE,
        Admin,
        "reads or writes files (sqlite3 shell functions)",
        ["readfile", "writefile", "edit",]
    ),
];
