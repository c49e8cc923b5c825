//! SQL classification: what a statement does, decided without running it.
//!
//! [`classify`] turns SQL text into a [`Classification`]: per statement a [`Category`], the verbs,
//! the tables read and written, whether an UPDATE or DELETE has a WHERE clause, and [`Flag`]s for
//! the traps that hide a write inside a read. It is pure (no I/O) and fails closed: anything it
//! cannot parse or does not understand is [`Category::Unknown`], never [`Category::Read`].
//!
//! Layout:
//! - `dialect`: the target dialects and how each folds identifiers.
//! - `lexical`: checks on the raw text and its tokens before parsing (size cap, executable
//!   comments, statement boundaries).
//! - `statement`: the category of each top-level statement kind.
//! - `walk`: a walk over every nested node (CTEs, subqueries, expressions, table factors) that
//!   finds what the top level hides: nested DML, SELECT INTO, locking clauses, function calls.
//! - `functions`: which functions are known to be free of side effects, per dialect, and which
//!   are known to have them.
//! - `names`: table names, normalised the way the target resolves them.

mod dialect;
mod functions;
mod lexical;
mod names;
mod statement;
mod walk;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use dialect::Dialect;
pub use names::TableName;
pub use statement::KNOWN_VERBS;

/// Default cap on the size of SQL text accepted for classification (64 KiB).
pub const DEFAULT_MAX_INPUT_BYTES: usize = 64 * 1024;

/// What a statement does, from least to most dangerous.
///
/// The order is the order of danger used to summarise several statements:
/// read < session < write < admin < ddl < privilege < unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Known to be free of side effects: safe to run unattended in a read-only transaction.
    Read,
    /// Changes only the state of the session (settings, transactions, cursors, locks held).
    Session,
    /// Changes data (INSERT, UPDATE, DELETE, MERGE, a writable CTE, a sequence, ...).
    Write,
    /// Operates the server (VACUUM, killing sessions, reading or writing server files, ...).
    Admin,
    /// Changes the schema (CREATE, ALTER, DROP, TRUNCATE, SELECT INTO a new table, ...).
    Ddl,
    /// Changes who may do what (GRANT, REVOKE, roles and users, SET ROLE).
    Privilege,
    /// Not understood: treated as the most dangerous category.
    Unknown,
}

impl Category {
    /// Every category, in order of danger.
    pub const ALL: [Category; 7] = [
        Category::Read,
        Category::Session,
        Category::Write,
        Category::Admin,
        Category::Ddl,
        Category::Privilege,
        Category::Unknown,
    ];

    /// The lower-case name used in JSON, policies and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Read => "read",
            Category::Session => "session",
            Category::Write => "write",
            Category::Admin => "admin",
            Category::Ddl => "ddl",
            Category::Privilege => "privilege",
            Category::Unknown => "unknown",
        }
    }

    /// Parses a lower-case category name.
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A property of a statement worth a reviewer's attention, found anywhere inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// A data-modifying statement inside a WITH clause (`WITH d AS (DELETE ...) SELECT ...`).
    WritableCte,
    /// `SELECT ... INTO`, which creates a table (PostgreSQL) or sets variables (MySQL).
    SelectInto,
    /// A locking clause such as `FOR UPDATE`, which takes row locks.
    LockingClause,
    /// `EXPLAIN ANALYZE`, which runs the explained statement.
    ExplainAnalyze,
    /// A call to a function known to have side effects (see `functions`).
    SideEffectFunction,
    /// A call to a function not known to be free of side effects (user-defined, extension, ...).
    UnknownFunction,
    /// The input holds more than one statement.
    MultiStatement,
    /// An UPDATE or DELETE without a WHERE clause: it touches every row.
    MissingWhere,
    /// `PREPARE name AS <statement>`: classified by the prepared statement.
    Prepare,
    /// A data-modifying statement that returns rows (`RETURNING`).
    Returning,
    /// An assignment to a user variable inside an expression (MySQL `@v := ...`).
    VariableAssignment,
}

impl Flag {
    /// The snake_case name used in JSON, policies and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::WritableCte => "writable_cte",
            Flag::SelectInto => "select_into",
            Flag::LockingClause => "locking_clause",
            Flag::ExplainAnalyze => "explain_analyze",
            Flag::SideEffectFunction => "side_effect_function",
            Flag::UnknownFunction => "unknown_function",
            Flag::MultiStatement => "multi_statement",
            Flag::MissingWhere => "missing_where",
            Flag::Prepare => "prepare",
            Flag::Returning => "returning",
            Flag::VariableAssignment => "variable_assignment",
        }
    }

    /// Every flag.
    pub const ALL: [Flag; 11] = [
        Flag::WritableCte,
        Flag::SelectInto,
        Flag::LockingClause,
        Flag::ExplainAnalyze,
        Flag::SideEffectFunction,
        Flag::UnknownFunction,
        Flag::MultiStatement,
        Flag::MissingWhere,
        Flag::Prepare,
        Flag::Returning,
        Flag::VariableAssignment,
    ];

    /// Parses a snake_case flag name.
    pub fn parse(name: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classification of one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementClass {
    /// The most dangerous category found anywhere in the statement.
    pub category: Category,
    /// Statement verbs, the top-level one first, then nested ones (`SELECT`, `DELETE`, ...).
    pub verbs: Vec<String>,
    /// Tables the statement reads, normalised, in order of first appearance.
    pub tables_read: Vec<TableName>,
    /// Tables the statement writes, creates, alters or drops, normalised.
    pub tables_written: Vec<TableName>,
    /// For UPDATE and DELETE: whether there is a WHERE clause. `None` for other statements.
    #[serde(rename = "where")]
    pub has_where: Option<bool>,
    /// Properties worth a reviewer's attention.
    pub flags: BTreeSet<Flag>,
    /// Functions called that have, or may have, side effects: `name: why`. Not part of the
    /// public JSON contract; the reasons carry the same facts in sentences.
    #[serde(skip)]
    pub risky_functions: Vec<String>,
    /// Why the category is what it is, in words a person can read.
    #[serde(skip)]
    pub reasons: Vec<String>,
}

/// Why SQL text could not be classified. The message is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// The text is larger than the configured cap.
    #[error("the SQL is {len} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        len: usize,
        /// The configured cap.
        max: usize,
    },
    /// No statement at all: empty, whitespace or comments only.
    #[error("no SQL statement found (the input is empty or only comments)")]
    Empty,
    /// MySQL executable comments (`/*! ... */`, `/*M! ... */`) run as SQL on MySQL.
    #[error("executable comments (/*! ... */ or /*M! ... */) are not accepted: write the SQL out plainly")]
    ExecutableComment,
    /// The tokenizer rejected the text.
    #[error("the SQL could not be read: {0}")]
    Tokenize(String),
    /// The parser rejected the text.
    #[error("the SQL could not be parsed: {0}")]
    Parse(String),
    /// The number of statements parsed does not match the statements in the text.
    #[error("could not tell where each statement ends: send one statement at a time")]
    AmbiguousBoundaries,
    /// A construct that is valid SQL but that Countersign refuses to classify.
    #[error("{0}")]
    Unsupported(String),
}

/// Settings for [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyOptions {
    /// Inputs larger than this many bytes are refused before parsing.
    pub max_input_bytes: usize,
    /// sqlparser's limit on nested parentheses, subqueries and the like.
    pub recursion_limit: usize,
    /// Functions the team vouches are free of side effects (user-defined or from extensions),
    /// lower case, as `function` or `schema.function`. Known side-effect functions stay risky.
    pub pure_functions: BTreeSet<String>,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            recursion_limit: 64,
            pure_functions: BTreeSet::new(),
        }
    }
}

/// The classification of a whole input, one or more statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The most dangerous category of all statements; `Unknown` when classification failed.
    pub category: Category,
    /// One entry per statement, in order. Empty when classification failed.
    pub statements: Vec<StatementClass>,
    /// Why classification failed, if it did.
    pub error: Option<ClassifyError>,
}

impl Classification {
    /// True when the input was classified (even if some statement is `Unknown`).
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// True when every statement is a read: safe to run unattended in a read-only transaction.
    pub fn is_read(&self) -> bool {
        self.is_ok() && self.category == Category::Read
    }

    fn failed(error: ClassifyError) -> Classification {
        Classification {
            category: Category::Unknown,
            statements: Vec::new(),
            error: Some(error),
        }
    }

    /// The classification in the public JSON shape of `countersign sql classify --format json`:
    /// `{"ok", "error", "category", "statements": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.as_public()).unwrap_or(serde_json::Value::Null)
    }

    /// The public JSON shape as a serialisable value, written without building a JSON tree.
    pub fn as_public(&self) -> impl Serialize + '_ {
        PublicClassification {
            ok: self.is_ok(),
            error: self.error.as_ref().map(|e| e.to_string()),
            category: self.category,
            statements: &self.statements,
        }
    }
}

/// The public JSON contract of a classification; scripts depend on its field names.
#[derive(Serialize)]
struct PublicClassification<'a> {
    ok: bool,
    error: Option<String>,
    category: Category,
    statements: &'a [StatementClass],
}

/// Classifies SQL text written for `dialect`.
///
/// Never panics and never trusts what it does not understand: unparseable, empty, comment-only,
/// oversized or executable-comment input comes back with `error` set and category `Unknown`.
/// Deeply nested input is handled on a stack grown to fit, so no input can overflow the stack.
pub fn classify(sql: &str, dialect: Dialect, options: &ClassifyOptions) -> Classification {
    let tokens = match lexical::prepare(sql, dialect, options) {
        Ok(tokens) => tokens,
        Err(error) => return Classification::failed(error),
    };
    // A left-deep chain of operators nests one AST level per token, and the parser, the walk and
    // the drop all recurse over it: make sure the stack has room for the worst case.
    let needed = lexical::stack_needed(tokens.significant);
    if stacker::remaining_stack().is_some_and(|left| left >= needed) {
        classify_tokens(tokens, dialect, options)
    } else {
        stacker::grow(needed, || classify_tokens(tokens, dialect, options))
    }
}

fn classify_tokens(
    tokens: lexical::Prepared,
    dialect: Dialect,
    options: &ClassifyOptions,
) -> Classification {
    let expected_statements = tokens.statement_count;
    let parsed = sqlparser::parser::Parser::new(dialect.parser_dialect())
        .with_recursion_limit(options.recursion_limit)
        .with_tokens_with_locations(tokens.tokens)
        .parse_statements();
    let statements = match parsed {
        Ok(statements) => statements,
        Err(error) => return Classification::failed(ClassifyError::Parse(parse_message(&error))),
    };
    if statements.is_empty() {
        return Classification::failed(ClassifyError::Empty);
    }
    if statements.len() != expected_statements {
        return Classification::failed(ClassifyError::AmbiguousBoundaries);
    }
    let multi = statements.len() > 1;
    let mut classes = Vec::with_capacity(statements.len());
    for statement in &statements {
        match walk::classify_statement(statement, dialect, &options.pure_functions) {
            Ok(mut class) => {
                if multi {
                    class.flags.insert(Flag::MultiStatement);
                }
                classes.push(class);
            }
            Err(error) => return Classification::failed(error),
        }
    }
    let category = classes
        .iter()
        .map(|c| c.category)
        .max()
        .unwrap_or(Category::Unknown);
    Classification {
        category,
        statements: classes,
        error: None,
    }
}

fn parse_message(error: &sqlparser::parser::ParserError) -> String {
    let text = error.to_string();
    text.strip_prefix("sql parser error: ")
        .unwrap_or(&text)
        .to_string()
}
