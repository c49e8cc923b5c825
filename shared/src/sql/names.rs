//! Table names as the target resolves them.

use std::fmt;

use serde::Serialize;
use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::Dialect;

/// A table name, schema-qualified where the SQL qualified it, each part folded as the target
/// folds identifiers. Displayed and serialised as the parts joined with `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    parts: Vec<String>,
}

impl TableName {
    /// Builds a name from already folded parts (`["public", "orders"]`).
    pub fn from_parts(parts: Vec<String>) -> TableName {
        TableName { parts }
    }

    /// The folded parts, outermost (catalog or schema) first.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// The last part: the table's own name without its schema.
    pub fn table(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or("")
    }

    /// Normalises a parsed object name for `dialect`.
    pub(crate) fn from_object_name(name: &ObjectName, dialect: Dialect) -> TableName {
        let parts = name
            .0
            .iter()
            .map(|part| match part {
                ObjectNamePart::Identifier(ident) => fold(ident, dialect),
                // A function-style part (Snowflake's IDENTIFIER(...)) is not a plain name: keep
                // its text so it can never match an allow pattern by accident.
                other => other.to_string(),
            })
            .collect();
        TableName { parts }
    }

    /// Normalises a single identifier for `dialect`.
    pub(crate) fn from_ident(ident: &Ident, dialect: Dialect) -> TableName {
        TableName {
            parts: vec![fold(ident, dialect)],
        }
    }
}

/// True for a relation sqlparser named `ONLY`: it reads `FROM ONLY t` as a table named ONLY
/// with the alias `t`. ONLY is reserved, so an unquoted relation of that name is never a table.
pub(crate) fn is_only_keyword(name: &ObjectName) -> bool {
    matches!(name.0.as_slice(),
        [ObjectNamePart::Identifier(ident)]
            if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("only"))
}

fn fold(ident: &Ident, dialect: Dialect) -> String {
    dialect.fold_identifier(&ident.value, ident.quote_style.is_some())
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts.join("."))
    }
}

impl Serialize for TableName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
