//! Which functions a read may call.
//!
//! A function is one of three kinds for a dialect:
//! - known to have side effects (`side_effects`): the statement takes that entry's category;
//! - known to be free of them: PostgreSQL's list is every built-in declared IMMUTABLE or STABLE in
//!   `pg_proc` (PostgreSQL 15), plus a few harmless VOLATILE ones, minus those that run SQL text or
//!   touch server files (`postgres_pure.txt`, see `scripts/gen-postgres-functions.sh`); MySQL's and
//!   SQLite's are their documented built-ins (`mysql_pure.txt`, `sqlite_pure.txt`);
//! - anything else (user-defined, extensions, schema-qualified names outside the catalog) is
//!   unknown, and a statement that calls it is not a read: fail closed.

mod side_effects;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use sqlparser::ast::{ObjectName, ObjectNamePart};

use super::{Category, Dialect};

/// What is known about a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FunctionKind {
    /// Known to be free of side effects.
    Pure,
    /// Known to have side effects of this category, for this reason.
    SideEffect(Category, &'static str),
    /// Not known: may do anything.
    Unknown,
}

/// Function-like forms that are SQL syntax in every dialect rather than catalog functions.
const SYNTAX: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "grouping",
    "row",
    "array",
    "exists",
    "cast",
    "extract",
    "position",
    "substring",
    "trim",
    "overlay",
    "treat",
    "values",
    "xmlparse",
    "xmlelement",
    "xmlforest",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmlconcat",
    "xmlattributes",
    "normalize",
];

static POSTGRES_PURE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("postgres_pure.txt").lines().collect());
static MYSQL_PURE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("mysql_pure.txt").lines().collect());
static SQLITE_PURE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("sqlite_pure.txt").lines().collect());

/// Exact names and prefixes (from entries ending in `*`) of the side-effect table, per dialect.
struct SideEffectIndex {
    exact: HashMap<(Dialect, &'static str), (Category, &'static str)>,
    prefixes: Vec<(Dialect, &'static str, Category, &'static str)>,
}

static SIDE_EFFECTS: LazyLock<SideEffectIndex> = LazyLock::new(|| {
    let mut index = SideEffectIndex {
        exact: HashMap::new(),
        prefixes: Vec::new(),
    };
    for entry in side_effects::all() {
        for &dialect in entry.dialects {
            match entry.name.strip_suffix('*') {
                Some(prefix) => index
                    .prefixes
                    .push((dialect, prefix, entry.category, entry.why)),
                None => {
                    index
                        .exact
                        .insert((dialect, entry.name), (entry.category, entry.why));
                }
            }
        }
    }
    index
});

/// Looks up a called function by its (possibly qualified) name; `has_arguments` tells whether the
/// call passes any (pass true when unsure). `declared_pure` holds names the caller vouches for
/// (lower case, `function` or `schema.function`); it cannot override a known side effect.
pub(crate) fn lookup(
    name: &ObjectName,
    dialect: Dialect,
    has_arguments: bool,
    declared_pure: &BTreeSet<String>,
) -> FunctionKind {
    let mut parts = name.0.iter().map(|part| match part {
        ObjectNamePart::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
        ObjectNamePart::Function(_) => None,
    });
    let (qualifier, base) = match (parts.next(), parts.next(), parts.next()) {
        (Some(Some(base)), None, None) => (None, base),
        (Some(Some(schema)), Some(Some(base)), None) => (Some(schema), base),
        _ => return FunctionKind::Unknown,
    };
    if let Some(kind) = side_effect(&base, dialect) {
        return kind;
    }
    // MySQL's LAST_INSERT_ID(expr) sets the value later calls return; without arguments it reads.
    if dialect == Dialect::Mysql && base == "last_insert_id" && has_arguments {
        return FunctionKind::SideEffect(Category::Session, "sets the session's last insert id");
    }
    if !declared_pure.is_empty() {
        let full = match &qualifier {
            Some(schema) => format!("{schema}.{base}"),
            None => base.clone(),
        };
        if declared_pure.contains(&full) {
            return FunctionKind::Pure;
        }
    }
    // A schema-qualified call resolves to the built-in only through the system catalog.
    let builtin_schema = matches!(
        (dialect, qualifier.as_deref()),
        (_, None) | (Dialect::Postgres | Dialect::Generic, Some("pg_catalog"))
    );
    if builtin_schema && is_pure(&base, dialect) {
        FunctionKind::Pure
    } else {
        FunctionKind::Unknown
    }
}

fn side_effect(base: &str, dialect: Dialect) -> Option<FunctionKind> {
    let index = &*SIDE_EFFECTS;
    if let Some(&(category, why)) = index.exact.get(&(dialect, base)) {
        return Some(FunctionKind::SideEffect(category, why));
    }
    index
        .prefixes
        .iter()
        .find(|(d, prefix, _, _)| *d == dialect && base.starts_with(prefix))
        .map(|&(_, _, category, why)| FunctionKind::SideEffect(category, why))
}

fn is_pure(base: &str, dialect: Dialect) -> bool {
    if SYNTAX.contains(&base) {
        return true;
    }
    match dialect {
        Dialect::Postgres => POSTGRES_PURE.contains(base),
        Dialect::Mysql => MYSQL_PURE.contains(base),
        Dialect::Sqlite => SQLITE_PURE.contains(base),
        // The generic dialect may front any of them: pure only if no dialect knows a side effect
        // (checked by the caller for the generic entries, which cover every dialect's list).
        Dialect::Generic => {
            POSTGRES_PURE.contains(base) || MYSQL_PURE.contains(base) || SQLITE_PURE.contains(base)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::Ident;

    fn lookup(name: &ObjectName, dialect: Dialect) -> FunctionKind {
        super::lookup(name, dialect, true, &BTreeSet::new())
    }

    fn name(parts: &[&str]) -> ObjectName {
        ObjectName::from(parts.iter().map(|p| Ident::new(*p)).collect::<Vec<_>>())
    }

    #[test]
    fn builtins_are_pure_and_side_effects_are_named() {
        assert_eq!(
            lookup(&name(&["lower"]), Dialect::Postgres),
            FunctionKind::Pure
        );
        assert_eq!(
            lookup(&name(&["pg_catalog", "now"]), Dialect::Postgres),
            FunctionKind::Pure
        );
        assert!(matches!(
            lookup(&name(&["pg_terminate_backend"]), Dialect::Postgres),
            FunctionKind::SideEffect(Category::Admin, _)
        ));
        assert!(matches!(
            lookup(&name(&["PG_CATALOG", "PG_SLEEP"]), Dialect::Postgres),
            FunctionKind::SideEffect(Category::Session, _)
        ));
        assert!(matches!(
            lookup(&name(&["pg_ls_waldir"]), Dialect::Postgres),
            FunctionKind::SideEffect(Category::Admin, _)
        ));
        assert!(matches!(
            lookup(&name(&["SLEEP"]), Dialect::Mysql),
            FunctionKind::SideEffect(Category::Session, _)
        ));
        assert!(matches!(
            lookup(&name(&["load_extension"]), Dialect::Sqlite),
            FunctionKind::SideEffect(Category::Admin, _)
        ));
    }

    #[test]
    fn last_insert_id_reads_without_arguments_and_sets_with_them() {
        let f = name(&["LAST_INSERT_ID"]);
        let declared = BTreeSet::new();
        assert_eq!(
            super::lookup(&f, Dialect::Mysql, false, &declared),
            FunctionKind::Pure
        );
        assert!(matches!(
            super::lookup(&f, Dialect::Mysql, true, &declared),
            FunctionKind::SideEffect(Category::Session, _)
        ));
    }

    #[test]
    fn unknown_and_shadowed_functions_are_unknown() {
        assert_eq!(
            lookup(&name(&["my_func"]), Dialect::Postgres),
            FunctionKind::Unknown
        );
        assert_eq!(
            lookup(&name(&["public", "lower"]), Dialect::Postgres),
            FunctionKind::Unknown
        );
        assert_eq!(
            lookup(&name(&["a", "b", "lower"]), Dialect::Postgres),
            FunctionKind::Unknown
        );
        // pg_sleep is not a MySQL function: unknown there, never pure.
        assert_eq!(
            lookup(&name(&["pg_sleep"]), Dialect::Mysql),
            FunctionKind::Unknown
        );
    }

    #[test]
    fn declared_pure_functions_are_pure_but_cannot_hide_side_effects() {
        let declared: BTreeSet<String> = [
            "my_func".to_string(),
            "app.fmt_money".to_string(),
            "pg_sleep".to_string(),
        ]
        .into();
        let look = |parts: &[&str]| super::lookup(&name(parts), Dialect::Postgres, true, &declared);
        assert_eq!(look(&["my_func"]), FunctionKind::Pure);
        assert_eq!(look(&["APP", "fmt_money"]), FunctionKind::Pure);
        assert_eq!(look(&["other", "fmt_money"]), FunctionKind::Unknown);
        assert!(matches!(look(&["pg_sleep"]), FunctionKind::SideEffect(..)));
    }

    #[test]
    fn generic_dialect_knows_every_dialects_side_effects() {
        for f in ["pg_sleep", "sleep", "load_extension", "nextval"] {
            assert!(
                matches!(
                    lookup(&name(&[f]), Dialect::Generic),
                    FunctionKind::SideEffect(..)
                ),
                "{f}"
            );
        }
    }
}
