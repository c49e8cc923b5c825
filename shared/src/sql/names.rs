//! Table names as the target resolves them.

use std::fmt;

use serde::Serialize;
use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::Dialect;

/// A table name, schema-qualified where the SQL qualified it, each part folded as the target
/// folds identifiers. Displayed and serialised as the parts joined with `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// The parts joined with `.`, kept because policies match it for every decision.
    joined: String,
    /// Where each part starts in `joined`.
    starts: Vec<usize>,
}

impl TableName {
    /// Builds a name from already folded parts (`["public", "orders"]`).
    pub fn from_parts(parts: Vec<String>) -> TableName {
        let mut joined = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        let mut starts = Vec::with_capacity(parts.len());
        for part in &parts {
            if !starts.is_empty() {
                joined.push('.');
            }
            starts.push(joined.len());
            joined.push_str(part);
        }
        TableName { joined, starts }
    }

    /// The folded parts, outermost (catalog or schema) first.
    pub fn parts(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.starts.len()).map(|i| self.part(i))
    }

    /// How many parts the name has.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True for a name without parts (never produced by the classifier).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The name from part `i` to the end: `suffix(0)` is the whole name, `suffix(len - 1)` the
    /// bare table.
    pub fn suffix(&self, i: usize) -> &str {
        self.starts
            .get(i)
            .map_or("", |&start| &self.joined[start..])
    }

    /// The whole name, parts joined with `.`.
    pub fn as_str(&self) -> &str {
        &self.joined
    }

    fn part(&self, i: usize) -> &str {
        let start = self.starts[i];
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.joined.len(), |next| next - 1);
        &self.joined[start..end]
    }

    /// The last part: the table's own name without its schema.
    pub fn table(&self) -> &str {
        self.starts
            .len()
            .checked_sub(1)
            .map_or("", |last| self.part(last))
    }

    /// Normalises a parsed object name for `dialect`.
    pub(crate) fn from_object_name(name: &ObjectName, dialect: Dialect) -> TableName {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|part| match part {
                ObjectNamePart::Identifier(ident) => fold(ident, dialect),
                // A function-style part (Snowflake's IDENTIFIER(...)) is not a plain name: keep
                // its text so it can never match an allow pattern by accident.
                other => other.to_string(),
            })
            .collect();
        TableName::from_parts(parts)
    }

    /// Normalises a single identifier for `dialect`.
    pub(crate) fn from_ident(ident: &Ident, dialect: Dialect) -> TableName {
        TableName::from_parts(vec![fold(ident, dialect)])
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
        f.write_str(&self.joined)
    }
}

impl Serialize for TableName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_suffixes_and_the_bare_table_come_from_the_joined_name() {
        let name = TableName::from_parts(vec!["hr".into(), "payroll".into(), "salaries".into()]);
        assert_eq!(name.to_string(), "hr.payroll.salaries");
        assert_eq!(
            name.parts().collect::<Vec<_>>(),
            ["hr", "payroll", "salaries"]
        );
        assert_eq!(name.suffix(1), "payroll.salaries");
        assert_eq!(name.suffix(2), "salaries");
        assert_eq!(name.table(), "salaries");
        let single = TableName::from_parts(vec!["orders".into()]);
        assert_eq!(
            (single.len(), single.table(), single.suffix(0)),
            (1, "orders", "orders")
        );
        let empty_part = TableName::from_parts(vec!["".into(), "t".into()]);
        assert_eq!(empty_part.parts().collect::<Vec<_>>(), ["", "t"]);
        assert_eq!(empty_part.table(), "t");
    }
}
