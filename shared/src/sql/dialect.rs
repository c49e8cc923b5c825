//! The SQL dialects Countersign classifies, and how each resolves identifiers.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlparser::dialect::{GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};

/// The dialect of a target database. SQL is always parsed with its target's dialect, since the
/// same text can mean different things (`--1` is a comment only in PostgreSQL and SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
    /// sqlparser's generic dialect, for targets none of the others fit.
    Generic,
}

static POSTGRES: PostgreSqlDialect = PostgreSqlDialect {};
static MYSQL: MySqlDialect = MySqlDialect {};
static SQLITE: SQLiteDialect = SQLiteDialect {};
static GENERIC: GenericDialect = GenericDialect {};

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 4] = [
        Dialect::Postgres,
        Dialect::Mysql,
        Dialect::Sqlite,
        Dialect::Generic,
    ];

    /// The name used on the command line and in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
            Dialect::Generic => "generic",
        }
    }

    /// Parses a dialect name; `postgresql`, `mariadb` and `sqlite3` are accepted as aliases.
    pub fn parse(name: &str) -> Option<Dialect> {
        match name.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            "sqlite" | "sqlite3" => Some(Dialect::Sqlite),
            "generic" => Some(Dialect::Generic),
            _ => None,
        }
    }

    /// The sqlparser dialect that parses this target's SQL.
    pub(crate) fn parser_dialect(self) -> &'static dyn sqlparser::dialect::Dialect {
        match self {
            Dialect::Postgres => &POSTGRES,
            Dialect::Mysql => &MYSQL,
            Dialect::Sqlite => &SQLITE,
            Dialect::Generic => &GENERIC,
        }
    }

    /// Folds one identifier the way the target resolves it.
    ///
    /// PostgreSQL folds unquoted names to lower case and keeps quoted ones; SQLite compares all
    /// names without regard to ASCII case; MySQL table names are case-sensitive on Linux, so they
    /// are kept as written. The generic dialect folds like PostgreSQL.
    pub(crate) fn fold_identifier(self, value: &str, quoted: bool) -> String {
        match self {
            Dialect::Postgres | Dialect::Generic if !quoted => value.to_lowercase(),
            Dialect::Sqlite => value.to_ascii_lowercase(),
            _ => value.to_string(),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
