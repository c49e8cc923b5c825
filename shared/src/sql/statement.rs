//! The category of each top-level statement kind, and the tables it targets.
//!
//! [`base`] looks at one statement node only; what is nested inside it (CTEs, subqueries,
//! function calls, the statement under EXPLAIN or PREPARE) is the walk's business. Every
//! statement kind is named here; a kind that is not is `Unknown`, so a new sqlparser release
//! cannot turn an unrecognised statement into a read.

use sqlparser::ast::{
    CopySource, CopyTarget, Delete, Expr, FromTable, GrantObjects, Insert, ObjectName, ObjectType,
    Set, SetExpr, Statement, TableFactor, TableObject, Update, Value,
};

use super::names::{is_only_keyword, TableName};
use super::{Category, ClassifyError, Dialect, Flag};

/// Every verb [`base`] reports for a statement kind it knows. `DROP <object type>` verbs for
/// other object types, and the first word of statements it does not know, come on top.
pub const KNOWN_VERBS: &[&str] = &[
    "ALTER COLLATION",
    "ALTER CONNECTOR",
    "ALTER FUNCTION",
    "ALTER INDEX",
    "ALTER OPERATOR",
    "ALTER OPERATOR CLASS",
    "ALTER OPERATOR FAMILY",
    "ALTER POLICY",
    "ALTER ROLE",
    "ALTER SCHEMA",
    "ALTER TABLE",
    "ALTER TEXT SEARCH",
    "ALTER TYPE",
    "ALTER USER",
    "ALTER VIEW",
    "ANALYZE",
    "ATTACH",
    "BEGIN",
    "CACHE",
    "CALL",
    "CLOSE",
    "COMMENT",
    "COMMIT",
    "COPY FROM",
    "COPY TO",
    "CREATE COLLATION",
    "CREATE CONNECTOR",
    "CREATE DATABASE",
    "CREATE DOMAIN",
    "CREATE EXTENSION",
    "CREATE FILE FORMAT",
    "CREATE FUNCTION",
    "CREATE INDEX",
    "CREATE MACRO",
    "CREATE OPERATOR",
    "CREATE OPERATOR CLASS",
    "CREATE OPERATOR FAMILY",
    "CREATE POLICY",
    "CREATE PROCEDURE",
    "CREATE ROLE",
    "CREATE SCHEMA",
    "CREATE SECRET",
    "CREATE SEQUENCE",
    "CREATE SERVER",
    "CREATE STAGE",
    "CREATE TABLE",
    "CREATE TEXT SEARCH",
    "CREATE TRIGGER",
    "CREATE TYPE",
    "CREATE USER",
    "CREATE VIEW",
    "CREATE VIRTUAL TABLE",
    "DEALLOCATE",
    "DECLARE",
    "DELETE",
    "DENY",
    "DESCRIBE",
    "DETACH",
    "DISCARD",
    "DROP CONNECTOR",
    "DROP DATABASE",
    "DROP DOMAIN",
    "DROP EXTENSION",
    "DROP FUNCTION",
    "DROP INDEX",
    "DROP MATERIALIZED VIEW",
    "DROP OPERATOR",
    "DROP OPERATOR CLASS",
    "DROP OPERATOR FAMILY",
    "DROP POLICY",
    "DROP PROCEDURE",
    "DROP ROLE",
    "DROP SCHEMA",
    "DROP SECRET",
    "DROP SEQUENCE",
    "DROP TABLE",
    "DROP TRIGGER",
    "DROP TYPE",
    "DROP USER",
    "DROP VIEW",
    "EXECUTE",
    "EXPLAIN",
    "EXPORT",
    "FETCH",
    "FLUSH",
    "GRANT",
    "INSERT",
    "INSTALL",
    "KILL",
    "LISTEN",
    "LOAD DATA",
    "LOCK TABLE",
    "LOCK TABLES",
    "MERGE",
    "NOTIFY",
    "OPEN",
    "OPTIMIZE TABLE",
    "PRAGMA",
    "PREPARE",
    "RELEASE SAVEPOINT",
    "RENAME TABLE",
    "REPLACE",
    "RESET",
    "REVOKE",
    "ROLLBACK",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "SET GLOBAL",
    "SET ROLE",
    "SET SESSION AUTHORIZATION",
    "SHOW",
    "SHOW PROCESSLIST",
    "TABLE",
    "TRUNCATE",
    "UNLISTEN",
    "UNLOCK TABLES",
    "UPDATE",
    "USE",
    "VACUUM",
    "VALUES",
];

/// How relations named directly by a statement (outside any query inside it) are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Targets {
    /// They are read (SHOW ... IN t, DESCRIBE t).
    Read,
    /// The statement lists its write targets itself; any other relation it names is read
    /// (UPDATE ... FROM s, DELETE ... USING s).
    Listed,
    /// Every relation it names is a target: written, created, altered or dropped.
    All,
}

/// What one statement node does, before looking inside it.
pub(crate) struct Base<'a> {
    /// The category of the statement itself.
    pub category: Category,
    /// Its verb, such as `SELECT` or `CREATE TABLE`.
    pub verb: String,
    /// Why the category is what it is.
    pub reason: Option<String>,
    /// Written tables whose name nodes the walk will meet: counted as written, not read.
    pub target_nodes: Vec<(&'a ObjectName, TableName)>,
    /// Written tables the walk does not meet (sqlparser does not visit them as relations).
    pub other_targets: Vec<TableName>,
    /// Read tables the walk does not meet.
    pub other_reads: Vec<TableName>,
    /// How other relations it names directly are counted.
    pub targets: Targets,
    /// For UPDATE and DELETE: whether there is a WHERE clause.
    pub has_where: Option<bool>,
    /// Flags of the statement itself.
    pub flags: Vec<Flag>,
}

impl<'a> Base<'a> {
    fn new(category: Category, verb: &str) -> Base<'a> {
        Base {
            category,
            verb: verb.to_string(),
            reason: None,
            target_nodes: Vec::new(),
            other_targets: Vec::new(),
            other_reads: Vec::new(),
            targets: if category == Category::Read {
                Targets::Read
            } else {
                Targets::All
            },
            has_where: None,
            flags: Vec::new(),
        }
    }

    fn because(mut self, reason: impl Into<String>) -> Base<'a> {
        self.reason = Some(reason.into());
        self
    }

    fn with_targets(mut self, names: impl IntoIterator<Item = &'a ObjectName>, d: Dialect) -> Self {
        self.other_targets
            .extend(names.into_iter().map(|n| TableName::from_object_name(n, d)));
        self
    }
}

/// Classifies one statement node.
pub(crate) fn base(statement: &Statement, dialect: Dialect) -> Result<Base<'_>, ClassifyError> {
    use Category::*;
    let d = dialect;
    Ok(match statement {
        Statement::Query(query) => Base::new(Read, query_verb(&query.body)),
        Statement::Insert(insert) => insert_base(insert, d),
        Statement::Update(update) => update_base(update, d)?,
        Statement::Delete(delete) => delete_base(delete, d)?,
        Statement::Merge(merge) => {
            let mut b = Base::new(Write, "MERGE");
            b.targets = Targets::Listed;
            push_table_targets(&mut b, std::slice::from_ref(&merge.table), d)?;
            b
        }
        Statement::Copy {
            source, to, target, ..
        } => copy_base(source, *to, target, d)?,
        Statement::Truncate(t) => {
            Base::new(Ddl, "TRUNCATE").with_targets(t.table_names.iter().map(|t| &t.name), d)
        }

        // Reads that are not queries.
        Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(..)
        | Statement::ShowObjects(..)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => Base::new(Read, "SHOW"),
        Statement::ShowProcessList { .. } => Base::new(Read, "SHOW PROCESSLIST"),
        Statement::ExplainTable { .. } => Base::new(Read, "DESCRIBE"),
        Statement::Explain {
            analyze, options, ..
        } => {
            let analyze = *analyze || options.iter().flatten().any(is_analyze_option);
            // A plain EXPLAIN does not run its statement, but it is judged as if it did: the
            // database's own parse tree holds the statement, and a reviewer loses little by
            // seeing `EXPLAIN DELETE ...` as a DELETE.
            let mut b = Base::new(Read, "EXPLAIN");
            if analyze {
                b.flags.push(Flag::ExplainAnalyze);
                b.reason = Some("EXPLAIN ANALYZE runs the statement it explains".into());
            }
            b
        }

        // Session state.
        Statement::Set(set) => set_base(set),
        Statement::StartTransaction { .. } => Base::new(Session, "BEGIN"),
        Statement::Commit { .. } => Base::new(Session, "COMMIT"),
        Statement::Rollback { .. } => Base::new(Session, "ROLLBACK"),
        Statement::Savepoint { .. } => Base::new(Session, "SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Base::new(Session, "RELEASE SAVEPOINT"),
        Statement::Use(..) => Base::new(Session, "USE"),
        Statement::Discard { .. } => Base::new(Session, "DISCARD"),
        Statement::Reset(..) => Base::new(Session, "RESET"),
        Statement::Declare { .. } => Base::new(Session, "DECLARE"),
        Statement::Fetch { .. } => Base::new(Session, "FETCH"),
        Statement::Open(..) => Base::new(Session, "OPEN"),
        Statement::Close { .. } => Base::new(Session, "CLOSE"),
        Statement::Deallocate { .. } => Base::new(Session, "DEALLOCATE"),
        Statement::LISTEN { .. } => Base::new(Session, "LISTEN"),
        Statement::UNLISTEN { .. } => Base::new(Session, "UNLISTEN"),
        Statement::UnlockTables => Base::new(Session, "UNLOCK TABLES"),
        Statement::Prepare { .. } => {
            let mut b = Base::new(Session, "PREPARE")
                .because("PREPARE is judged by the statement it prepares");
            b.flags.push(Flag::Prepare);
            b
        }

        // Data changes that are not DML.
        Statement::NOTIFY { .. } => {
            Base::new(Write, "NOTIFY").because("NOTIFY sends a message to other sessions")
        }

        // Operating the server.
        Statement::Analyze(a) => Base::new(Admin, "ANALYZE").with_targets(a.table_name.as_ref(), d),
        Statement::Vacuum(v) => Base::new(Admin, "VACUUM").with_targets(v.table_name.as_ref(), d),
        Statement::OptimizeTable { .. } => Base::new(Admin, "OPTIMIZE TABLE"),
        Statement::Flush { .. } => Base::new(Admin, "FLUSH"),
        Statement::Kill { .. } => Base::new(Admin, "KILL"),
        Statement::Pragma { name, value, is_eq } => pragma_base(name, value.is_some(), *is_eq),
        Statement::Lock(lock) => Base::new(Admin, "LOCK TABLE")
            .because("LOCK TABLE blocks other sessions")
            .with_targets(lock.tables.iter().map(|t| &t.name), d),
        Statement::LockTables { .. } => {
            Base::new(Admin, "LOCK TABLES").because("LOCK TABLES blocks other sessions")
        }
        Statement::AttachDatabase { .. } | Statement::AttachDuckDBDatabase { .. } => {
            Base::new(Admin, "ATTACH").because("ATTACH opens or creates a database file")
        }
        Statement::DetachDuckDBDatabase { .. } => Base::new(Admin, "DETACH"),
        Statement::Install { .. } | Statement::Load { .. } => Base::new(Admin, "INSTALL"),
        Statement::LoadData { .. } => {
            Base::new(Admin, "LOAD DATA").because("LOAD DATA reads a file into a table")
        }
        Statement::Directory { .. }
        | Statement::Unload { .. }
        | Statement::ExportData(..)
        | Statement::CopyIntoSnowflake { .. }
        | Statement::Put { .. }
        | Statement::Remove(..)
        | Statement::List(..) => Base::new(Admin, "EXPORT").because("moves data to or from files"),
        Statement::Msck(..) | Statement::Cache { .. } | Statement::UNCache { .. } => {
            Base::new(Admin, "CACHE")
        }

        // Who may do what.
        Statement::Grant(g) => privilege_base("GRANT", g.objects.as_ref(), d),
        Statement::Revoke(r) => privilege_base("REVOKE", r.objects.as_ref(), d),
        Statement::Deny(..) => Base::new(Privilege, "DENY"),
        Statement::CreateRole(..) => Base::new(Privilege, "CREATE ROLE"),
        Statement::AlterRole { .. } => Base::new(Privilege, "ALTER ROLE"),
        Statement::CreateUser(..) => Base::new(Privilege, "CREATE USER"),
        Statement::AlterUser(..) => Base::new(Privilege, "ALTER USER"),
        Statement::CreatePolicy(..) => Base::new(Privilege, "CREATE POLICY"),
        Statement::AlterPolicy(..) => Base::new(Privilege, "ALTER POLICY"),
        Statement::DropPolicy(..) => Base::new(Privilege, "DROP POLICY"),
        Statement::CreateSecret { .. } => Base::new(Privilege, "CREATE SECRET"),
        Statement::DropSecret { .. } => Base::new(Privilege, "DROP SECRET"),

        // Schema changes.
        Statement::Drop {
            object_type, names, ..
        } => drop_base(object_type, names, d),
        Statement::CreateTable(..) => Base::new(Ddl, "CREATE TABLE"),
        Statement::CreateVirtualTable { .. } => Base::new(Ddl, "CREATE VIRTUAL TABLE"),
        Statement::CreateView(..) => Base::new(Ddl, "CREATE VIEW"),
        Statement::CreateIndex(..) => Base::new(Ddl, "CREATE INDEX"),
        Statement::AlterTable(..) => Base::new(Ddl, "ALTER TABLE"),
        Statement::AlterIndex { .. } => Base::new(Ddl, "ALTER INDEX"),
        Statement::AlterView { .. } => Base::new(Ddl, "ALTER VIEW"),
        Statement::RenameTable(renames) => Base::new(Ddl, "RENAME TABLE")
            .with_targets(renames.iter().flat_map(|r| [&r.old_name, &r.new_name]), d),
        Statement::Comment { .. } => Base::new(Ddl, "COMMENT"),
        Statement::CreateServer(..) => Base::new(Ddl, "CREATE SERVER"),
        Statement::CreateConnector(..) => Base::new(Ddl, "CREATE CONNECTOR"),
        Statement::CreateOperator(..) => Base::new(Ddl, "CREATE OPERATOR"),
        Statement::CreateOperatorFamily(..) => Base::new(Ddl, "CREATE OPERATOR FAMILY"),
        Statement::CreateOperatorClass(..) => Base::new(Ddl, "CREATE OPERATOR CLASS"),
        Statement::CreateTextSearch(..) => Base::new(Ddl, "CREATE TEXT SEARCH"),
        Statement::AlterSchema(..) => Base::new(Ddl, "ALTER SCHEMA"),
        Statement::AlterFunction(..) => Base::new(Ddl, "ALTER FUNCTION"),
        Statement::AlterType(..) => Base::new(Ddl, "ALTER TYPE"),
        Statement::AlterCollation(..) => Base::new(Ddl, "ALTER COLLATION"),
        Statement::AlterOperator(..) => Base::new(Ddl, "ALTER OPERATOR"),
        Statement::AlterOperatorFamily(..) => Base::new(Ddl, "ALTER OPERATOR FAMILY"),
        Statement::AlterOperatorClass(..) => Base::new(Ddl, "ALTER OPERATOR CLASS"),
        Statement::AlterTextSearch(..) => Base::new(Ddl, "ALTER TEXT SEARCH"),
        Statement::AlterConnector { .. } => Base::new(Ddl, "ALTER CONNECTOR"),
        Statement::DropFunction(..) => Base::new(Ddl, "DROP FUNCTION"),
        Statement::DropDomain(..) => Base::new(Ddl, "DROP DOMAIN"),
        Statement::DropProcedure { .. } => Base::new(Ddl, "DROP PROCEDURE"),
        Statement::DropConnector { .. } => Base::new(Ddl, "DROP CONNECTOR"),
        Statement::CreateExtension(..) => Base::new(Ddl, "CREATE EXTENSION"),
        Statement::CreateCollation(..) => Base::new(Ddl, "CREATE COLLATION"),
        Statement::DropExtension(..) => Base::new(Ddl, "DROP EXTENSION"),
        Statement::DropOperator(..) => Base::new(Ddl, "DROP OPERATOR"),
        Statement::DropOperatorFamily(..) => Base::new(Ddl, "DROP OPERATOR FAMILY"),
        Statement::DropOperatorClass(..) => Base::new(Ddl, "DROP OPERATOR CLASS"),
        Statement::CreateSchema { .. } => Base::new(Ddl, "CREATE SCHEMA"),
        Statement::CreateDatabase { .. } => Base::new(Ddl, "CREATE DATABASE"),
        Statement::CreateFunction(..) => Base::new(Ddl, "CREATE FUNCTION"),
        Statement::CreateTrigger(..) => Base::new(Ddl, "CREATE TRIGGER"),
        Statement::DropTrigger(..) => Base::new(Ddl, "DROP TRIGGER"),
        Statement::CreateProcedure { .. } => Base::new(Ddl, "CREATE PROCEDURE"),
        Statement::CreateMacro { .. } => Base::new(Ddl, "CREATE MACRO"),
        Statement::CreateStage { .. } => Base::new(Ddl, "CREATE STAGE"),
        Statement::CreateFileFormat { .. } => Base::new(Ddl, "CREATE FILE FORMAT"),
        Statement::CreateSequence { .. } => Base::new(Ddl, "CREATE SEQUENCE"),
        Statement::CreateDomain(..) => Base::new(Ddl, "CREATE DOMAIN"),
        Statement::CreateType { .. } => Base::new(Ddl, "CREATE TYPE"),

        // Procedural code and indirection: what runs is not visible here.
        Statement::Call(..) => Base::new(Unknown, "CALL")
            .because("CALL runs a procedure whose effects are not visible"),
        Statement::Execute { .. } => Base::new(Unknown, "EXECUTE")
            .because("EXECUTE runs a statement prepared elsewhere, whose text is not visible"),
        _ => Base::new(Unknown, &leading_words(statement, 1))
            .because("Countersign does not know what this kind of statement does"),
    })
}

/// The verb of a query; empty when its body is a data-changing statement, whose own verb counts.
fn query_verb(body: &SetExpr) -> &'static str {
    match body {
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => "",
        SetExpr::Values(_) => "VALUES",
        SetExpr::Table(_) => "TABLE",
        _ => "SELECT",
    }
}

fn insert_base(insert: &Insert, d: Dialect) -> Base<'_> {
    let verb = if insert.replace_into {
        "REPLACE"
    } else {
        "INSERT"
    };
    let mut b = Base::new(Category::Write, verb);
    b.targets = Targets::Listed;
    match &insert.table {
        TableObject::TableName(name) => b
            .target_nodes
            .push((name, TableName::from_object_name(name, d))),
        other => b
            .other_targets
            .push(TableName::from_parts(vec![other.to_string()])),
    }
    if insert.returning.is_some() {
        b.flags.push(Flag::Returning);
    }
    b
}

fn update_base(update: &Update, d: Dialect) -> Result<Base<'_>, ClassifyError> {
    let mut b = Base::new(Category::Write, "UPDATE");
    b.targets = Targets::Listed;
    // MySQL's multi-table UPDATE may write any joined table: all of them are targets.
    let factors = std::iter::once(&update.table.relation)
        .chain(update.table.joins.iter().map(|j| &j.relation));
    push_table_targets(&mut b, factors, d)?;
    b.has_where = Some(update.selection.is_some());
    if update.returning.is_some() {
        b.flags.push(Flag::Returning);
    }
    Ok(b)
}

fn delete_base(delete: &Delete, d: Dialect) -> Result<Base<'_>, ClassifyError> {
    let mut b = Base::new(Category::Write, "DELETE");
    b.targets = Targets::Listed;
    let from = match &delete.from {
        FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
    };
    // `DELETE t1 FROM t1 JOIN t2` (MySQL) names its targets, perhaps by alias; every table in
    // FROM is counted as written, which over-reports rather than misses.
    let factors = from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    push_table_targets(&mut b, factors, d)?;
    let aliases: Vec<String> = from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter_map(|f| match f {
            TableFactor::Table {
                alias: Some(alias), ..
            } => Some(alias.name.value.to_lowercase()),
            _ => None,
        })
        .collect();
    for name in &delete.tables {
        let is_alias = name.0.len() == 1 && aliases.contains(&name.to_string().to_lowercase());
        if !is_alias {
            b.other_targets.push(TableName::from_object_name(name, d));
        }
    }
    b.has_where = Some(delete.selection.is_some());
    if delete.returning.is_some() {
        b.flags.push(Flag::Returning);
    }
    Ok(b)
}

fn push_table_targets<'a>(
    b: &mut Base<'a>,
    factors: impl IntoIterator<Item = &'a TableFactor>,
    d: Dialect,
) -> Result<(), ClassifyError> {
    for factor in factors {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let table = if is_only_keyword(name) {
                    match alias {
                        Some(alias) if !alias.explicit => TableName::from_ident(&alias.name, d),
                        _ => return Err(unsupported("this form of ONLY; write `ONLY table_name`")),
                    }
                } else {
                    TableName::from_object_name(name, d)
                };
                b.target_nodes.push((name, table));
            }
            TableFactor::Table { .. } => {
                return Err(unsupported("writing through a table function"))
            }
            // A derived table or join in a write target: its own relations are walked.
            _ => {}
        }
    }
    Ok(())
}

fn copy_base<'a>(
    source: &'a CopySource,
    to: bool,
    target: &CopyTarget,
    d: Dialect,
) -> Result<Base<'a>, ClassifyError> {
    if !to {
        if matches!(target, CopyTarget::Stdin) {
            // sqlparser reads everything after COPY ... FROM STDIN as data, so later statements
            // would vanish from sight: refuse it.
            return Err(unsupported(
                "COPY ... FROM STDIN: send rows with INSERT instead",
            ));
        }
        let mut b = Base::new(Category::Admin, "COPY FROM")
            .because("COPY FROM reads a file or runs a program on the database server");
        if let CopySource::Table { table_name, .. } = source {
            b.target_nodes
                .push((table_name, TableName::from_object_name(table_name, d)));
        }
        return Ok(b);
    }
    let mut b = match target {
        CopyTarget::Stdout => Base::new(Category::Admin, "COPY TO")
            .because("COPY TO STDOUT streams data outside the result protocol"),
        _ => Base::new(Category::Admin, "COPY TO")
            .because("COPY TO writes a file or runs a program on the database server"),
    };
    b.targets = Targets::Read;
    if let CopySource::Table { table_name, .. } = source {
        // Not visited as a relation by sqlparser: name it as read explicitly.
        b.other_reads
            .push(TableName::from_object_name(table_name, d));
    }
    Ok(b)
}

fn set_base(set: &Set) -> Base<'_> {
    match set {
        Set::SetRole { .. } => Base::new(Category::Privilege, "SET ROLE")
            .because("SET ROLE changes the privileges the session runs with"),
        Set::SetSessionAuthorization(..) => {
            Base::new(Category::Privilege, "SET SESSION AUTHORIZATION")
                .because("SET SESSION AUTHORIZATION changes who the session runs as")
        }
        Set::SingleAssignment {
            scope, variable, ..
        } => {
            let name = variable.to_string().to_ascii_lowercase();
            let global = matches!(scope, Some(sqlparser::ast::ContextModifier::Global))
                || name.starts_with("@@global.")
                || name.starts_with("@@persist");
            if global {
                Base::new(Category::Admin, "SET GLOBAL")
                    .because("SET GLOBAL changes the server's configuration for every session")
            } else {
                Base::new(Category::Session, "SET")
            }
        }
        _ => Base::new(Category::Session, "SET"),
    }
}

/// SQLite pragmas that only report.
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "database_list",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
];
/// SQLite pragmas that report a setting when given no value, and change it when given one.
const SETTING_PRAGMAS: &[&str] = &[
    "page_count",
    "page_size",
    "freelist_count",
    "schema_version",
    "user_version",
    "encoding",
    "application_id",
    "data_version",
    "journal_mode",
    "foreign_keys",
    "auto_vacuum",
    "cache_size",
    "synchronous",
    "max_page_count",
    "busy_timeout",
];

fn pragma_base(name: &ObjectName, has_value: bool, is_eq: bool) -> Base<'static> {
    let pragma = name
        .0
        .last()
        .map(|p| p.to_string().to_ascii_lowercase())
        .unwrap_or_default();
    // With a value, even a reporting pragma is counted as a change, as SQLite's own authorizer
    // counts it: the value can be a setting as easily as an argument.
    let reads = !has_value
        && !is_eq
        && (READ_PRAGMAS.contains(&pragma.as_str()) || SETTING_PRAGMAS.contains(&pragma.as_str()));
    if reads {
        Base::new(Category::Read, "PRAGMA")
    } else {
        Base::new(Category::Admin, "PRAGMA").because(format!(
            "PRAGMA {pragma} may change the database or its settings"
        ))
    }
}

fn privilege_base<'a>(verb: &str, objects: Option<&'a GrantObjects>, d: Dialect) -> Base<'a> {
    let b = Base::new(Category::Privilege, verb);
    match objects {
        Some(GrantObjects::Tables(names) | GrantObjects::Views(names)) => b.with_targets(names, d),
        _ => b,
    }
}

fn drop_base<'a>(object_type: &ObjectType, names: &'a [ObjectName], d: Dialect) -> Base<'a> {
    let category = match object_type {
        ObjectType::Role | ObjectType::User => Category::Privilege,
        _ => Category::Ddl,
    };
    let verb = format!("DROP {}", object_type.to_string().to_uppercase());
    let b = Base::new(category, &verb);
    match object_type {
        ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => {
            b.with_targets(names, d)
        }
        _ => b,
    }
}

/// True for a PostgreSQL EXPLAIN option that turns ANALYZE on (`ANALYZE`, `ANALYZE true`, ...).
fn is_analyze_option(option: &sqlparser::ast::UtilityOption) -> bool {
    if !option.name.value.eq_ignore_ascii_case("analyze") {
        return false;
    }
    // Anything but an explicit off is on: fail closed on forms we do not recognise.
    let off = match &option.arg {
        None => false,
        Some(Expr::Value(v)) => match &v.value {
            Value::Boolean(on) => !on,
            Value::Number(n, _) => n == "0",
            Value::SingleQuotedString(s) => matches!(
                s.to_ascii_lowercase().as_str(),
                "off" | "false" | "0" | "no"
            ),
            _ => false,
        },
        Some(Expr::Identifier(ident)) => {
            matches!(
                ident.value.to_ascii_lowercase().as_str(),
                "off" | "false" | "no"
            )
        }
        Some(_) => false,
    };
    !off
}

/// The first `n` words of a statement's text, upper-cased: a verb for rarely seen kinds.
fn leading_words(statement: &Statement, n: usize) -> String {
    statement
        .to_string()
        .split_whitespace()
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

fn unsupported(what: &str) -> ClassifyError {
    ClassifyError::Unsupported(format!("not supported: {what}"))
}
