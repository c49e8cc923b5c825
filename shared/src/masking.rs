//! Which result columns of a statement must be masked before results leave the executor.
//!
//! [`plan_masking`] reads one statement and returns a [`MaskPlan`]; the executor then asks the
//! plan, once it knows the result's column names, which columns to mask
//! ([`MaskPlan::columns_to_mask`]). Pure: no I/O, no database schema.
//!
//! Masking follows the data, not the column's name (DESIGN.md §4). Two rules apply together:
//! - By name, always: a result column whose name matches a masking pattern is masked, whatever
//!   it holds (`Policy::masks_column(None, name)`).
//! - By provenance: each output item is traced through aliases, expressions, functions,
//!   whole-row references (`row_to_json(u)`, `SELECT u`), scalar subqueries, derived tables and
//!   CTEs (including column lists such as `c(x)`), set operations (per position) and
//!   `RETURNING`. An item that mentions a masked column, a whole row, a name that a derived
//!   relation exports as masked, or a function Countersign does not know as a built-in (it may
//!   read a masked column under any name) is masked by its position.
//!
//! `*` and `t.*` at the top level are resolved by the database, so their columns are masked by
//! name (and by `table.column` patterns of the tables they cover). When a wildcard covers a
//! derived table or CTE that shows masked data under a name the by-name rule would miss, the
//! statement is refused with the reason: masking that a rename defeats is worse than none.
//! Positions: items before the first wildcard count from the start, items after the last from
//! the end; a masked item between two wildcards is refused.
//!
//! Fail closed: unparseable input, several statements, and statement kinds whose results cannot
//! be traced (`EXECUTE`, `CALL`, `FETCH`, `COPY`, ...) are refused. A construct the analysis does
//! not follow inside a query (an unusual FROM item, a subquery it cannot read) masks everything
//! that may come from it; at the top level it is refused.
//!
//! Known limits: the analysis sees the SQL, not the schema, so a view that renames a masked
//! column must be listed in the masking patterns under its own column names.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::OnceLock;

use sqlparser::ast::{
    Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement,
    TableAlias, TableFactor, TableObject, TableWithJoins, UpdateTableFromKind, Values, Visit,
    Visitor, WildcardAdditionalOptions, With,
};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::policy::{Pattern, Patterns, Policy};
use crate::sql::{classify, ClassifyOptions, Dialect, TableName};

/// Stack reserved for parsing, analysing and dropping the tree, whatever the input (as in
/// `sql::lexical`, whose helper is private to `sql`).
const BASE_STACK: usize = 512 * 1024;
/// Stack reserved per significant token: a left-deep chain nests one tree level per token.
const STACK_PER_TOKEN: usize = 8 * 1024;

// --- the plan ------------------------------------------------------------------------------

/// What the executor must mask in one statement's results.
#[derive(Debug, Clone)]
pub struct MaskPlan {
    /// The masking patterns, for the by-name rule; `None` when the policy masks nothing.
    names: Option<NameMatcher>,
    /// Result positions, counted from the first column, that carry masked data.
    from_start: Vec<bool>,
    /// Result positions, counted from the last column, that carry masked data.
    from_end: Vec<bool>,
    /// Tables whose columns a top-level wildcard shows: their `table.column` patterns apply.
    tables: Vec<String>,
    /// The exact column count when the statement has no top-level wildcard: any other count
    /// means the analysis misread the statement, and everything is masked.
    expected_columns: Option<usize>,
}

impl MaskPlan {
    /// A plan that masks nothing (policy has no masking patterns).
    pub fn none() -> MaskPlan {
        MaskPlan {
            names: None,
            from_start: Vec::new(),
            from_end: Vec::new(),
            tables: Vec::new(),
            expected_columns: None,
        }
    }

    /// Whether nothing at all will be masked.
    pub fn is_empty(&self) -> bool {
        self.names.is_none()
    }

    /// For the result's column names (in order, as the database reports them), which to mask.
    pub fn columns_to_mask(&self, column_names: &[&str]) -> Vec<bool> {
        let count = column_names.len();
        let Some(names) = &self.names else {
            return vec![false; count];
        };
        if self
            .expected_columns
            .is_some_and(|expected| expected != count)
        {
            return vec![true; count];
        }
        column_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                self.from_start.get(i).copied().unwrap_or(false)
                    || self.from_end.get(count - 1 - i).copied().unwrap_or(false)
                    || names.masks(None, name)
                    || self
                        .tables
                        .iter()
                        .any(|table| names.masks(Some(table), name))
            })
            .collect()
    }
}

/// Why a statement's results cannot be masked safely (the statement is refused with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskRefusal {
    /// The SQL could not be read as one statement (parse error, empty, too large, ...).
    #[error("the SQL could not be checked for masked columns: {0}")]
    Unreadable(String),
    /// More than one statement: each one's results are masked on their own.
    #[error("masked columns are checked one statement at a time: send one statement")]
    MultipleStatements,
    /// A top-level wildcard covers a relation that shows masked data under a name the by-name
    /// rule would not catch.
    #[error(
        "`{wildcard}` over {relation}, which shows {data} under another name: name the columns you need"
    )]
    HiddenByWildcard {
        /// The wildcard as written (`SELECT *`, `SELECT s.*`, `TABLE c`, `RETURNING *`).
        wildcard: String,
        /// The relation it covers, for the user (`` `s` `` or `a subquery`).
        relation: String,
        /// Where the masked data comes from (`` the masked column `email` ``).
        data: String,
    },
    /// A masked item sits between two wildcards, so its result position is unknown.
    #[error(
        "{data} is selected between two wildcards, so its place in the results is unknown: name the columns you need"
    )]
    BetweenWildcards {
        /// Where the masked data comes from.
        data: String,
    },
    /// A wildcard in a later branch of a set operation: its columns take the first branch's
    /// names, so masking by name cannot follow them.
    #[error(
        "`{wildcard}` in a later branch of a UNION, INTERSECT or EXCEPT shows its columns under the first branch's names: name the columns you need"
    )]
    WildcardInLaterBranch {
        /// The wildcard as written.
        wildcard: String,
    },
    /// A statement or construct whose results masking cannot follow.
    #[error("{0}")]
    Unsupported(String),
}

/// Plans the masking of `sql`'s results under `policy`.
///
/// Never panics; deeply nested input is analysed on a stack grown to fit.
pub fn plan_masking(sql: &str, dialect: Dialect, policy: &Policy) -> Result<MaskPlan, MaskRefusal> {
    let patterns = &policy.masking().columns;
    if patterns.is_empty() {
        return Ok(MaskPlan::none());
    }
    // The classifier knows which functions are built-ins: anything else (even a function the
    // policy declares free of side effects) may read a masked column, so no pure list here.
    let options = ClassifyOptions {
        max_input_bytes: policy.classify_options().max_input_bytes,
        recursion_limit: policy.classify_options().recursion_limit,
        pure_functions: BTreeSet::new(),
    };
    let classification = classify(sql, dialect, &options);
    if let Some(error) = classification.error {
        return Err(MaskRefusal::Unreadable(error.to_string()));
    }
    let [statement_class] = classification.statements.as_slice() else {
        return Err(MaskRefusal::MultipleStatements);
    };
    let risky = &statement_class.risky_functions;

    let tokens = Tokenizer::new(dialect.parser_dialect(), sql)
        .tokenize_with_location()
        .map_err(|e| MaskRefusal::Unreadable(e.message))?;
    let significant = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .count();
    let needed = BASE_STACK.saturating_add(significant.saturating_mul(STACK_PER_TOKEN));
    let names = NameMatcher::new(patterns);
    let run = || plan_tokens(tokens, dialect, options.recursion_limit, &names, risky);
    let positions = if stacker::remaining_stack().is_some_and(|left| left >= needed) {
        run()
    } else {
        stacker::grow(needed, run)
    }?;
    Ok(MaskPlan {
        names: Some(names),
        from_start: positions.from_start,
        from_end: positions.from_end,
        tables: positions.tables,
        expected_columns: positions.expected_columns,
    })
}

fn plan_tokens(
    tokens: Vec<TokenWithSpan>,
    dialect: Dialect,
    recursion_limit: usize,
    names: &NameMatcher,
    risky: &[String],
) -> Result<Positions, MaskRefusal> {
    let statements = Parser::new(dialect.parser_dialect())
        .with_recursion_limit(recursion_limit)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| MaskRefusal::Unreadable(e.to_string()))?;
    let [statement] = statements.as_slice() else {
        return Err(MaskRefusal::MultipleStatements);
    };
    let analyzer = Analyzer {
        dialect,
        names,
        risky,
    };
    let branches = analyzer.statement(statement)?;
    analyzer.positions(&branches)
}

/// Positional masks of the top-level result, before they become a [`MaskPlan`].
#[derive(Default)]
struct Positions {
    /// See [`MaskPlan::from_start`].
    from_start: Vec<bool>,
    /// See [`MaskPlan::from_end`].
    from_end: Vec<bool>,
    /// See [`MaskPlan::tables`].
    tables: Vec<String>,
    /// See [`MaskPlan::expected_columns`].
    expected_columns: Option<usize>,
}

fn set(positions: &mut Vec<bool>, index: usize) {
    if positions.len() <= index {
        positions.resize(index + 1, false);
    }
    positions[index] = true;
}

// --- the by-name rule ----------------------------------------------------------------------

/// The masking patterns, matched as `Policy::masks_column` matches them, without compiling a
/// glob per call (the plan outlives the policy borrow and is consulted per result).
#[derive(Debug, Clone)]
struct NameMatcher {
    /// One entry per policy pattern.
    patterns: Vec<MaskPattern>,
}

/// One masking pattern.
#[derive(Debug, Clone)]
struct MaskPattern {
    /// The pattern as compiled by the policy: matches `column` or `table.column`.
    whole: Pattern,
    /// For a `table.column` pattern: its column part, for columns of unknown table.
    column: Option<ColumnPart>,
}

/// The part after the last `.` of a pattern, matched against a bare column name.
#[derive(Debug, Clone)]
struct ColumnPart {
    /// The text, compiled only when the simple shape cannot answer.
    text: String,
    /// The shape, when it needs no glob engine (ASCII, wildcards only at the ends).
    simple: Option<Simple>,
    /// The compiled glob; `None` inside when the text is not a valid glob (fail closed).
    compiled: OnceLock<Option<Pattern>>,
}

/// Glob shapes matched without the glob engine, lower-cased.
#[derive(Debug, Clone)]
enum Simple {
    /// Matches everything (`*`, or an empty part, which the policy treats as unknown).
    Any,
    /// No wildcard.
    Exact(String),
    /// `prefix*`.
    Prefix(String),
    /// `*suffix`.
    Suffix(String),
    /// `*middle*`.
    Contains(String),
}

impl Simple {
    fn of(text: &str) -> Option<Simple> {
        let plain = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', '\\']);
        if text.trim().is_empty() {
            // `Pattern::new` refuses it, and `masks_column` then masks (fail closed).
            return Some(Simple::Any);
        }
        if !text.is_ascii() {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        if lower == "*" {
            Some(Simple::Any)
        } else if plain(&lower) {
            Some(Simple::Exact(lower))
        } else if let Some(mid) = lower
            .strip_prefix('*')
            .and_then(|s| s.strip_suffix('*'))
            .filter(|s| plain(s))
        {
            Some(Simple::Contains(mid.to_string()))
        } else if let Some(prefix) = lower.strip_suffix('*').filter(|s| plain(s)) {
            Some(Simple::Prefix(prefix.to_string()))
        } else {
            lower
                .strip_prefix('*')
                .filter(|s| plain(s))
                .map(|suffix| Simple::Suffix(suffix.to_string()))
        }
    }

    /// `candidate` must be ASCII.
    fn is_match(&self, candidate: &str) -> bool {
        let lower = candidate.to_ascii_lowercase();
        match self {
            Simple::Any => true,
            Simple::Exact(text) => lower == *text,
            Simple::Prefix(prefix) => lower.starts_with(prefix.as_str()),
            Simple::Suffix(suffix) => lower.ends_with(suffix.as_str()),
            Simple::Contains(middle) => lower.contains(middle.as_str()),
        }
    }
}

impl ColumnPart {
    fn is_match(&self, column: &str) -> bool {
        match &self.simple {
            Some(simple @ Simple::Any) => simple.is_match(column),
            Some(simple) if column.is_ascii() => simple.is_match(column),
            _ => self
                .compiled
                .get_or_init(|| Pattern::new(&self.text).ok())
                .as_ref()
                .is_none_or(|pattern| pattern.is_match(column)),
        }
    }
}

impl NameMatcher {
    fn new(patterns: &Patterns) -> NameMatcher {
        NameMatcher {
            patterns: patterns
                .iter()
                .map(|pattern| MaskPattern {
                    whole: pattern.clone(),
                    column: pattern
                        .as_str()
                        .rsplit_once('.')
                        .map(|(_, column)| ColumnPart {
                            text: column.to_string(),
                            simple: Simple::of(column),
                            compiled: OnceLock::new(),
                        }),
                })
                .collect(),
        }
    }

    /// The same answer as `Policy::masks_column(table, column)`.
    fn masks(&self, table: Option<&str>, column: &str) -> bool {
        match table {
            None => self.patterns.iter().any(|p| {
                p.whole.is_match(column) || p.column.as_ref().is_some_and(|c| c.is_match(column))
            }),
            Some(table) => {
                let qualified = format!("{table}.{column}");
                let bare = table
                    .rsplit_once('.')
                    .map(|(_, bare)| format!("{bare}.{column}"));
                self.patterns.iter().any(|p| {
                    p.whole.is_match(column)
                        || p.whole.is_match(&qualified)
                        || bare.as_deref().is_some_and(|b| p.whole.is_match(b))
                })
            }
        }
    }
}

// --- what relations export ------------------------------------------------------------------

/// Why an output is masked: where its data comes from, in words for a refusal.
#[derive(Debug, Clone)]
struct Taint(Rc<str>);

impl Taint {
    fn new(text: String) -> Taint {
        Taint(text.into())
    }

    fn column(column: &str) -> Taint {
        Taint::new(format!("the masked column `{column}`"))
    }

    fn rows(relation: &str) -> Taint {
        Taint::new(format!("whole rows of `{relation}`"))
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// A relation a name in FROM (or a wildcard) refers to.
#[derive(Debug, Clone)]
enum Rel {
    /// A table or view of the database, by its normalised name: the policy's patterns decide.
    Table(String),
    /// A derived table, CTE, table function or anything else analysed here.
    Derived(Rc<Outputs>),
}

impl Rel {
    /// A relation known to export nothing masked (a recursive CTE's first approximation).
    fn clean() -> Rel {
        Rel::Derived(Rc::new(Outputs::default()))
    }

    /// A relation every column of which may carry `taint`.
    fn opaque(taint: Taint) -> Rel {
        Rel::Derived(Rc::new(Outputs::opaque(taint)))
    }

    /// `rel`, with every column possibly carrying `taint` as well.
    fn tainted(rel: Rel, taint: Taint) -> Rel {
        Rel::Derived(Rc::new(Outputs {
            items: vec![Item::Wildcard {
                text: String::new(),
                rels: vec![(String::new(), rel)],
            }],
            all: Some(taint),
        }))
    }

    /// Whether the column `column` (lower case) of this relation carries masked data.
    fn lookup(&self, names: &NameMatcher, column: &str) -> Option<Taint> {
        match self {
            Rel::Table(table) => names
                .masks(Some(table), column)
                .then(|| Taint::column(&format!("{table}.{column}"))),
            Rel::Derived(outputs) => outputs.lookup(names, column),
        }
    }

    /// Whether a whole row of this relation may carry masked data. A table's columns are not
    /// known, so its rows always may.
    fn any(&self) -> Option<Taint> {
        match self {
            Rel::Table(table) => Some(Taint::rows(table)),
            Rel::Derived(outputs) => outputs.any(),
        }
    }
}

/// One output item of a query.
#[derive(Debug, Clone)]
enum Item {
    /// A column whose name is known (an alias, a plain column, a column list entry).
    Named {
        /// Lower case.
        name: String,
        /// Why it is masked, if it is.
        taint: Option<Taint>,
    },
    /// A column the database names (`lower(email)`, a VALUES column): any name may be it.
    Unnamed(Option<Taint>),
    /// `*` or `t.*`: the columns of these relations, named by them.
    Wildcard {
        /// As written, for refusals (`SELECT *`).
        text: String,
        /// The relations covered, each with its name for refusals.
        rels: Vec<(String, Rel)>,
    },
}

impl Item {
    fn taint(&self) -> Option<Taint> {
        match self {
            Item::Named { taint, .. } | Item::Unnamed(taint) => taint.clone(),
            Item::Wildcard { rels, .. } => rels.iter().find_map(|(_, rel)| rel.any()),
        }
    }

    fn add_taint(&mut self, extra: Taint) {
        match self {
            Item::Named { taint, .. } | Item::Unnamed(taint) => {
                taint.get_or_insert(extra);
            }
            Item::Wildcard { .. } => {}
        }
    }
}

/// What a query, derived table or CTE returns.
#[derive(Debug, Clone, Default)]
struct Outputs {
    /// The items, in order.
    items: Vec<Item>,
    /// Masked data that may sit under any name (a renaming the analysis cannot follow).
    all: Option<Taint>,
}

impl Outputs {
    fn opaque(taint: Taint) -> Outputs {
        Outputs {
            items: Vec::new(),
            all: Some(taint),
        }
    }

    fn has_wildcard(&self) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item, Item::Wildcard { .. }))
    }

    /// Whether the column `column` (lower case) carries masked data. Unnamed items may have
    /// any name, so their taint applies to every name.
    fn lookup(&self, names: &NameMatcher, column: &str) -> Option<Taint> {
        if let Some(taint) = &self.all {
            return Some(taint.clone());
        }
        self.items.iter().find_map(|item| match item {
            Item::Named { name, taint } if name == column => taint.clone(),
            Item::Named { .. } => None,
            Item::Unnamed(taint) => taint.clone(),
            Item::Wildcard { rels, .. } => {
                rels.iter().find_map(|(_, rel)| rel.lookup(names, column))
            }
        })
    }

    /// Whether any output may carry masked data.
    fn any(&self) -> Option<Taint> {
        self.all
            .clone()
            .or_else(|| self.items.iter().find_map(Item::taint))
    }

    /// Combines the next branch of a set operation: per position when both are explicit.
    fn combine(mut self, other: Outputs) -> Outputs {
        if !self.has_wildcard() && !other.has_wildcard() {
            for (i, item) in other.items.into_iter().enumerate() {
                if let Some(taint) = item.taint() {
                    match self.items.get_mut(i) {
                        Some(mine) => mine.add_taint(taint),
                        None => {
                            self.all.get_or_insert(taint);
                        }
                    }
                }
            }
            if let Some(taint) = other.all {
                self.all.get_or_insert(taint);
            }
        } else if let Some(taint) = other.any() {
            // Positions are unknown: the other branch's data may land under any name.
            self.all.get_or_insert(taint);
        }
        self
    }

    /// Applies a column list (`s(a, b)`, `WITH c(x)`): positional when nothing is masked and
    /// no wildcard hides positions; otherwise every listed name is masked.
    fn renamed(self, alias: Option<&TableAlias>, label: &str) -> Outputs {
        let Some(alias) = alias.filter(|a| !a.columns.is_empty()) else {
            return self;
        };
        let listed = alias.columns.iter().map(|c| lower(&c.name.value));
        let taint = if self.has_wildcard() {
            Some(Taint::new(format!(
                "columns of `{label}` renamed by its column list"
            )))
        } else {
            self.any()
        };
        match taint {
            None => {
                let mut items = self.items;
                for (i, name) in listed.enumerate() {
                    let item = Item::Named { name, taint: None };
                    match items.get_mut(i) {
                        Some(slot) => *slot = item,
                        None => items.push(item),
                    }
                }
                Outputs {
                    items,
                    all: self.all,
                }
            }
            Some(taint) => {
                let mut items: Vec<Item> = listed
                    .map(|name| Item::Named {
                        name,
                        taint: Some(taint.clone()),
                    })
                    .collect();
                items.extend(self.items);
                Outputs {
                    items,
                    all: self.all,
                }
            }
        }
    }
}

// --- scopes ---------------------------------------------------------------------------------

/// A relation in FROM (or a DML target), by the names the query can use for it.
struct Binding {
    /// The alias, or the table's own name without schema, lower case.
    label: String,
    /// For a table: its full name, lower case (`public.users`).
    full: Option<String>,
    /// What it exports.
    rel: Rel,
}

/// A CTE in scope.
struct NamedRel {
    /// Folded as the target folds it: resolution must match the database's.
    folded: String,
    /// Lower case: a near miss is unioned in rather than trusted apart.
    lower: String,
    /// What it exports.
    rel: Rel,
}

/// The names visible at one level of a query; lookups walk out through the parents.
struct Scope<'a> {
    /// The enclosing level (correlated subqueries see it).
    parent: Option<&'a Scope<'a>>,
    /// CTEs of this level's WITH clause, in definition order.
    ctes: Vec<NamedRel>,
    /// FROM items (or DML targets) of this level.
    bindings: Vec<Binding>,
    /// Masked select-list aliases, for dialects that let later items use them.
    aliases: Vec<(String, Taint)>,
}

impl<'a> Scope<'a> {
    fn new(parent: Option<&'a Scope<'a>>) -> Scope<'a> {
        Scope {
            parent,
            ctes: Vec::new(),
            bindings: Vec::new(),
            aliases: Vec::new(),
        }
    }

    fn chain(&self) -> impl Iterator<Item = &Scope<'a>> {
        std::iter::successors(Some(self), |scope| scope.parent)
    }

    fn bindings_named<'s>(&'s self, qualifier: &'s [String]) -> impl Iterator<Item = &'s Binding> {
        let joined = qualifier.join(".");
        let last = qualifier.last().cloned().unwrap_or_default();
        self.chain()
            .flat_map(|scope| scope.bindings.iter())
            .filter(move |b| b.label == last || b.full.as_deref() == Some(joined.as_str()))
    }

    /// A column named without qualifier: by name, or from any relation or alias in scope.
    fn unqualified(&self, names: &NameMatcher, column: &str) -> Option<Taint> {
        if names.masks(None, column) {
            return Some(Taint::column(column));
        }
        self.chain().find_map(|scope| {
            scope
                .aliases
                .iter()
                .find(|(alias, _)| alias == column)
                .map(|(_, taint)| taint.clone())
                .or_else(|| {
                    scope
                        .bindings
                        .iter()
                        .find_map(|b| b.rel.lookup(names, column))
                })
        })
    }

    /// `qualifier.column`: from the relations so named; unresolved qualifiers fail closed.
    fn qualified(&self, names: &NameMatcher, qualifier: &[String], column: &str) -> Option<Taint> {
        let mut found = false;
        for binding in self.bindings_named(qualifier) {
            found = true;
            if let Some(taint) = binding.rel.lookup(names, column) {
                return Some(taint);
            }
        }
        if found {
            return None;
        }
        let table = qualifier.join(".");
        if names.masks(Some(&table), column) {
            return Some(Taint::column(&format!("{table}.{column}")));
        }
        self.unqualified(names, column)
    }

    /// A whole-row reference (`u`, `users`, `t.*`): masked when the relation may hold masked
    /// data. `None` for a name that is no relation in scope.
    fn rows_of(&self, qualifier: &[String]) -> Option<Option<Taint>> {
        let mut found = false;
        for binding in self.bindings_named(qualifier) {
            found = true;
            if let Some(taint) = binding.rel.any() {
                return Some(Some(taint));
            }
        }
        found.then_some(None)
    }

    /// Whole rows of every relation in scope (`f(*)`).
    fn all_rows(&self) -> Option<Taint> {
        self.chain()
            .flat_map(|scope| scope.bindings.iter())
            .find_map(|b| b.rel.any())
    }

    /// The CTE this single-part name resolves to, the way the database resolves it.
    fn cte(&self, folded: &str) -> Option<&Rel> {
        self.chain()
            .find_map(|scope| scope.ctes.iter().rev().find(|c| c.folded == folded))
            .map(|c| &c.rel)
    }

    /// CTEs whose name differs from `lower` only by case.
    fn ctes_like(&self, lower: &str) -> Vec<Rel> {
        self.chain()
            .flat_map(|scope| scope.ctes.iter())
            .filter(|c| c.lower == lower)
            .map(|c| c.rel.clone())
            .collect()
    }
}

fn lower(text: &str) -> String {
    text.to_lowercase()
}

fn lower_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => lower(&ident.value),
            other => lower(&other.to_string()),
        })
        .collect()
}

fn is_count(name: &ObjectName) -> bool {
    match lower_parts(name).as_slice() {
        [base] => base == "count",
        [schema, base] => schema == "pg_catalog" && base == "count",
        _ => false,
    }
}

// --- the analysis ---------------------------------------------------------------------------

/// Walks one statement with what it needs to decide what is masked.
struct Analyzer<'p> {
    /// How the target folds identifiers, to resolve CTE names as it does.
    dialect: Dialect,
    /// The policy's patterns.
    names: &'p NameMatcher,
    /// `name: why` of each function the classifier does not know as a built-in.
    risky: &'p [String],
}

impl Analyzer<'_> {
    /// The top-level result's branches (one, or one per set-operation branch); empty for a
    /// statement that returns no rows of table data.
    fn statement(&self, statement: &Statement) -> Result<Vec<Outputs>, MaskRefusal> {
        match statement {
            Statement::Query(query) => {
                let mut branches = Vec::new();
                self.query_branches(query, None, &mut branches)?;
                Ok(branches)
            }
            Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Merge(_) => Ok(self.dml(statement, None)?.into_iter().collect()),
            other if returns_no_table_data(other) => Ok(Vec::new()),
            other => {
                let text = other.to_string();
                let verb = text
                    .split_whitespace()
                    .next()
                    .unwrap_or("this")
                    .to_uppercase();
                Err(MaskRefusal::Unsupported(format!(
                    "the results of {verb} cannot be checked for masked columns"
                )))
            }
        }
    }

    /// Turns the top-level branches into positional masks, refusing what cannot be masked.
    fn positions(&self, branches: &[Outputs]) -> Result<Positions, MaskRefusal> {
        let mut positions = Positions::default();
        let mut any_wildcard = false;
        let mut count = None;
        for (index, branch) in branches.iter().enumerate() {
            if let Some(taint) = &branch.all {
                // Not produced at the top level today; if it ever is, nothing is safe to show.
                return Err(MaskRefusal::Unsupported(format!(
                    "{} may be in any column of the results: name the columns you need",
                    taint.as_str()
                )));
            }
            let wildcards: Vec<usize> = branch
                .items
                .iter()
                .enumerate()
                .filter(|(_, item)| matches!(item, Item::Wildcard { .. }))
                .map(|(i, _)| i)
                .collect();
            for item in &branch.items {
                let Item::Wildcard { text, rels } = item else {
                    continue;
                };
                for (label, rel) in rels {
                    if index == 0 {
                        self.expose(rel, label, text, &mut positions.tables)?;
                    } else if rel.any().is_some() {
                        return Err(MaskRefusal::WildcardInLaterBranch {
                            wildcard: text.clone(),
                        });
                    }
                }
            }
            let len = branch.items.len();
            match (wildcards.first(), wildcards.last()) {
                (Some(&first), Some(&last)) => {
                    any_wildcard = true;
                    for (i, item) in branch.items.iter().enumerate() {
                        if matches!(item, Item::Wildcard { .. }) {
                            continue;
                        }
                        let Some(taint) = item.taint() else {
                            continue;
                        };
                        if i < first {
                            set(&mut positions.from_start, i);
                        } else if i > last {
                            set(&mut positions.from_end, len - 1 - i);
                        } else if !(index == 0 && self.caught_by_name(item)) {
                            return Err(MaskRefusal::BetweenWildcards {
                                data: taint.as_str().to_string(),
                            });
                        }
                    }
                }
                _ => {
                    count = Some(len);
                    for (i, item) in branch.items.iter().enumerate() {
                        if item.taint().is_some() {
                            set(&mut positions.from_start, i);
                        }
                    }
                }
            }
        }
        if !any_wildcard {
            positions.expected_columns = count;
        }
        Ok(positions)
    }

    /// Whether the by-name rule masks this item wherever it lands.
    fn caught_by_name(&self, item: &Item) -> bool {
        matches!(item, Item::Named { name, .. } if self.names.masks(None, name))
    }

    /// Checks that a top-level wildcard over `rel` shows masked data only under names the
    /// by-name rule masks, and collects the tables whose `table.column` patterns apply.
    fn expose(
        &self,
        rel: &Rel,
        label: &str,
        wildcard: &str,
        tables: &mut Vec<String>,
    ) -> Result<(), MaskRefusal> {
        let hidden = |taint: &Taint| MaskRefusal::HiddenByWildcard {
            wildcard: wildcard.to_string(),
            relation: if label.is_empty() {
                "a subquery".to_string()
            } else {
                format!("`{label}`")
            },
            data: taint.as_str().to_string(),
        };
        match rel {
            Rel::Table(table) => {
                if !tables.contains(table) {
                    tables.push(table.clone());
                }
            }
            Rel::Derived(outputs) => {
                if let Some(taint) = &outputs.all {
                    return Err(hidden(taint));
                }
                for item in &outputs.items {
                    match item {
                        Item::Named {
                            name,
                            taint: Some(taint),
                        } if !self.names.masks(None, name) => return Err(hidden(taint)),
                        Item::Unnamed(Some(taint)) => return Err(hidden(taint)),
                        Item::Wildcard { rels, .. } => {
                            for (_, inner) in rels {
                                self.expose(inner, label, wildcard, tables)?;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Collects the branches of a query's set operations, each analysed in its scope.
    fn query_branches(
        &self,
        query: &Query,
        parent: Option<&Scope<'_>>,
        out: &mut Vec<Outputs>,
    ) -> Result<(), MaskRefusal> {
        if !query.pipe_operators.is_empty() {
            return Err(unsupported("pipe operators (|>)"));
        }
        if query.for_clause.is_some() {
            return Err(unsupported("FOR XML / FOR JSON"));
        }
        let scope = self.with_scope(query.with.as_ref(), parent);
        self.set_branches(&query.body, &scope, out)
    }

    fn set_branches(
        &self,
        body: &SetExpr,
        scope: &Scope<'_>,
        out: &mut Vec<Outputs>,
    ) -> Result<(), MaskRefusal> {
        match body {
            SetExpr::SetOperation { left, right, .. } => {
                self.set_branches(left, scope, out)?;
                self.set_branches(right, scope, out)
            }
            SetExpr::Query(query) => self.query_branches(query, Some(scope), out),
            SetExpr::Select(select) => {
                out.push(self.select(select, scope)?);
                Ok(())
            }
            SetExpr::Values(values) => {
                out.push(self.values(values, scope));
                Ok(())
            }
            SetExpr::Table(table) => {
                let parts: Vec<String> = [&table.schema_name, &table.table_name]
                    .into_iter()
                    .flatten()
                    .map(|p| self.dialect.fold_identifier(p, false))
                    .collect();
                let name = TableName::from_parts(parts);
                let rel = self.resolve(&name, scope);
                out.push(Outputs {
                    items: vec![Item::Wildcard {
                        text: format!("TABLE {name}"),
                        rels: vec![(name.table().to_string(), rel)],
                    }],
                    all: None,
                });
                Ok(())
            }
            SetExpr::Insert(statement)
            | SetExpr::Update(statement)
            | SetExpr::Delete(statement)
            | SetExpr::Merge(statement) => {
                out.push(self.dml(statement, Some(scope))?.unwrap_or_default());
                Ok(())
            }
        }
    }

    /// What a nested query (derived table, CTE, subquery) returns. What the analysis cannot
    /// follow here masks all its outputs instead of refusing: they are all masked anyway.
    fn nested(&self, query: &Query, scope: &Scope<'_>) -> Outputs {
        let mut branches = Vec::new();
        match self.query_branches(query, Some(scope), &mut branches) {
            Ok(()) => {
                let mut branches = branches.into_iter();
                let first = branches.next().unwrap_or_default();
                branches.fold(first, Outputs::combine)
            }
            Err(refusal) => Outputs::opaque(Taint::new(format!(
                "a subquery masking cannot follow ({refusal})"
            ))),
        }
    }

    /// The CTEs of a WITH clause, each analysed with the ones visible to it.
    fn with_scope<'s>(&self, with: Option<&With>, parent: Option<&'s Scope<'s>>) -> Scope<'s> {
        let mut scope = Scope::new(parent);
        let Some(with) = with else {
            return scope;
        };
        let fold = |ident: &Ident| {
            self.dialect
                .fold_identifier(&ident.value, ident.quote_style.is_some())
        };
        if with.recursive {
            // Every name is visible in every body. A first pass with clean stand-ins finds
            // whether masked data enters at all; if it does, every CTE of the clause may carry
            // it under any name.
            for cte in &with.cte_tables {
                scope.ctes.push(NamedRel {
                    folded: fold(&cte.alias.name),
                    lower: lower(&cte.alias.name.value),
                    rel: Rel::clean(),
                });
            }
            let mut taint = None;
            for (i, cte) in with.cte_tables.iter().enumerate() {
                let label = lower(&cte.alias.name.value);
                let outputs = self
                    .nested(&cte.query, &scope)
                    .renamed(Some(&cte.alias), &label);
                if taint.is_none() {
                    taint = outputs.any();
                }
                if let Some(slot) = scope.ctes.get_mut(i) {
                    slot.rel = Rel::Derived(Rc::new(outputs));
                }
            }
            if let Some(taint) = taint {
                for cte in &mut scope.ctes {
                    cte.rel = Rel::opaque(taint.clone());
                }
            }
        } else {
            for cte in &with.cte_tables {
                let label = lower(&cte.alias.name.value);
                let outputs = self
                    .nested(&cte.query, &scope)
                    .renamed(Some(&cte.alias), &label);
                scope.ctes.push(NamedRel {
                    folded: fold(&cte.alias.name),
                    lower: label,
                    rel: Rel::Derived(Rc::new(outputs)),
                });
            }
        }
        scope
    }

    /// A relation named in FROM: a CTE in scope, else a table.
    fn resolve(&self, name: &TableName, scope: &Scope<'_>) -> Rel {
        let table = Rel::Table(name.as_str().to_string());
        if name.len() != 1 {
            return table;
        }
        if let Some(rel) = scope.cte(name.as_str()) {
            return rel.clone();
        }
        let similar = scope.ctes_like(&lower(name.as_str()));
        if similar.is_empty() {
            return table;
        }
        // Same name but for case: the database decides; mask as if it could be either.
        let rels = std::iter::once(table)
            .chain(similar)
            .map(|rel| (name.table().to_string(), rel))
            .collect();
        Rel::Derived(Rc::new(Outputs {
            items: vec![Item::Wildcard {
                text: String::new(),
                rels,
            }],
            all: None,
        }))
    }

    fn select(&self, select: &Select, parent: &Scope<'_>) -> Result<Outputs, MaskRefusal> {
        if !select.lateral_views.is_empty() {
            return Err(unsupported("LATERAL VIEW"));
        }
        if select.value_table_mode.is_some() {
            return Err(unsupported("SELECT AS STRUCT / AS VALUE"));
        }
        let mut scope = Scope::new(Some(parent));
        for from in &select.from {
            self.bind_from(from, &mut scope);
        }
        let items = self.items(&select.projection, &mut scope, "SELECT")?;
        Ok(Outputs { items, all: None })
    }

    fn values(&self, values: &Values, scope: &Scope<'_>) -> Outputs {
        let width = values
            .rows
            .iter()
            .map(|row| row.content.len())
            .max()
            .unwrap_or(0);
        let items = (0..width)
            .map(|i| {
                Item::Unnamed(
                    values
                        .rows
                        .iter()
                        .filter_map(|row| row.content.get(i))
                        .find_map(|expr| self.scan(expr, scope)),
                )
            })
            .collect();
        Outputs { items, all: None }
    }

    /// A select list or RETURNING list.
    fn items(
        &self,
        projection: &[SelectItem],
        scope: &mut Scope<'_>,
        keyword: &str,
    ) -> Result<Vec<Item>, MaskRefusal> {
        let mut items = Vec::with_capacity(projection.len());
        for item in projection {
            match item {
                SelectItem::UnnamedExpr(expr) => {
                    let taint = self.scan(expr, scope);
                    items.push(match output_name(expr) {
                        Some(name) => Item::Named { name, taint },
                        None => Item::Unnamed(taint),
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let taint = self.scan(expr, scope);
                    let name = lower(&alias.value);
                    if let Some(taint) = &taint {
                        scope.aliases.push((name.clone(), taint.clone()));
                    }
                    items.push(Item::Named { name, taint });
                }
                SelectItem::ExprWithAliases { expr, aliases } => {
                    let taint = self.scan(expr, scope);
                    for alias in aliases {
                        items.push(Item::Named {
                            name: lower(&alias.value),
                            taint: taint.clone(),
                        });
                    }
                }
                SelectItem::QualifiedWildcard(kind, options) => {
                    check_wildcard_options(options)?;
                    let text = format!("{keyword} {kind}");
                    let rels = match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(name) => {
                            let qualifier = lower_parts(name);
                            let joined = qualifier.join(".");
                            let last = qualifier.last().cloned().unwrap_or_default();
                            let rels: Vec<(String, Rel)> = scope
                                .bindings
                                .iter()
                                .filter(|b| b.label == last || b.full.as_deref() == Some(&joined))
                                .map(|b| (b.label.clone(), b.rel.clone()))
                                .collect();
                            if rels.is_empty() {
                                let taint = Taint::new(format!(
                                    "`{joined}.*`, which names no relation of this query"
                                ));
                                vec![(joined, Rel::opaque(taint))]
                            } else {
                                rels
                            }
                        }
                        SelectItemQualifiedWildcardKind::Expr(expr) => {
                            let rel = match self.scan(expr, scope) {
                                Some(taint) => Rel::opaque(taint),
                                None => Rel::clean(),
                            };
                            vec![(expr.to_string(), rel)]
                        }
                    };
                    items.push(Item::Wildcard { text, rels });
                }
                SelectItem::Wildcard(options) => {
                    check_wildcard_options(options)?;
                    let rels = scope
                        .bindings
                        .iter()
                        .map(|b| (b.label.clone(), b.rel.clone()))
                        .collect();
                    items.push(Item::Wildcard {
                        text: format!("{keyword} *"),
                        rels,
                    });
                }
            }
        }
        Ok(items)
    }

    fn bind_from(&self, from: &TableWithJoins, scope: &mut Scope<'_>) {
        self.bind_factor(&from.relation, scope);
        for join in &from.joins {
            self.bind_factor(&join.relation, scope);
        }
    }

    /// Adds the relations a FROM item brings into scope. Later items see earlier ones, as
    /// LATERAL ones do: harmless for the others, which cannot refer to them.
    fn bind_factor(&self, factor: &TableFactor, scope: &mut Scope<'_>) {
        let alias_label = |alias: &Option<TableAlias>| alias.as_ref().map(|a| lower(&a.name.value));
        let binding = match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let table = TableName::from_object_name(name, self.dialect);
                let label = alias_label(alias).unwrap_or_else(|| lower(table.table()));
                let mut rel = self.resolve(&table, scope);
                if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                    let outputs = match rel {
                        // A CTE's outputs are known: rename them by position.
                        Rel::Derived(outputs) => outputs.as_ref().clone(),
                        // A table's are not: every listed name may be a masked column.
                        table => Outputs {
                            items: vec![Item::Wildcard {
                                text: String::new(),
                                rels: vec![(label.clone(), table)],
                            }],
                            all: None,
                        },
                    };
                    rel = Rel::Derived(Rc::new(outputs.renamed(alias.as_ref(), &label)));
                }
                Binding {
                    label,
                    full: Some(lower(table.as_str())),
                    rel,
                }
            }
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                ..
            } => {
                let taint = self.call_taint(name, &args.args, scope);
                self.function_binding(name, alias, taint)
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                let taint = self.call_taint(name, args, scope);
                self.function_binding(name, alias, taint)
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let label = alias_label(alias).unwrap_or_default();
                let outputs = self.nested(subquery, scope).renamed(alias.as_ref(), &label);
                Binding {
                    label,
                    full: None,
                    rel: Rel::Derived(Rc::new(outputs)),
                }
            }
            TableFactor::TableFunction { expr, alias } => {
                let taint = self.scan(expr, scope);
                self.opaque_binding(alias, String::new(), taint)
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                let taint = self.scan(array_exprs, scope);
                self.opaque_binding(alias, "unnest".to_string(), taint)
            }
            TableFactor::JsonTable {
                json_expr, alias, ..
            }
            | TableFactor::OpenJsonTable {
                json_expr, alias, ..
            } => {
                let taint = self.scan(json_expr, scope);
                self.opaque_binding(alias, String::new(), taint)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let start = scope.bindings.len();
                self.bind_from(table_with_joins, scope);
                let Some(alias) = alias else {
                    return;
                };
                let label = lower(&alias.name.value);
                let rels = scope
                    .bindings
                    .get(start..)
                    .unwrap_or_default()
                    .iter()
                    .map(|b| (b.label.clone(), b.rel.clone()))
                    .collect();
                let outputs = Outputs {
                    items: vec![Item::Wildcard {
                        text: String::new(),
                        rels,
                    }],
                    all: None,
                }
                .renamed(Some(alias), &label);
                Binding {
                    label,
                    full: None,
                    rel: Rel::Derived(Rc::new(outputs)),
                }
            }
            other => {
                // PIVOT, UNPIVOT, MATCH_RECOGNIZE, XMLTABLE, ...: their columns cannot be
                // traced, so any of them may be masked.
                let text = other.to_string();
                let kind = text.split_whitespace().next().unwrap_or("").to_string();
                Binding {
                    label: String::new(),
                    full: None,
                    rel: Rel::opaque(Taint::new(format!(
                        "a FROM item masking cannot follow (`{kind} ...`)"
                    ))),
                }
            }
        };
        scope.bindings.push(binding);
    }

    fn function_binding(
        &self,
        name: &ObjectName,
        alias: &Option<TableAlias>,
        taint: Option<Taint>,
    ) -> Binding {
        let default = lower_parts(name).pop().unwrap_or_default();
        self.opaque_binding(alias, default, taint)
    }

    /// A table function and the like: its columns are named by the alias or the database, and
    /// all carry the taint of its arguments.
    fn opaque_binding(
        &self,
        alias: &Option<TableAlias>,
        default_label: String,
        taint: Option<Taint>,
    ) -> Binding {
        let label = alias
            .as_ref()
            .map(|a| lower(&a.name.value))
            .unwrap_or(default_label);
        let items = alias
            .iter()
            .flat_map(|a| a.columns.iter())
            .map(|c| Item::Named {
                name: lower(&c.name.value),
                taint: taint.clone(),
            })
            .collect();
        Binding {
            label,
            full: None,
            rel: Rel::Derived(Rc::new(Outputs { items, all: taint })),
        }
    }

    /// The taint of a table function call: the function itself, then its arguments.
    fn call_taint(
        &self,
        name: &ObjectName,
        args: &[FunctionArg],
        scope: &Scope<'_>,
    ) -> Option<Taint> {
        self.risky(name).or_else(|| {
            args.iter().find_map(|arg| {
                wildcard_arg(name, arg, scope).or_else(|| match arg_expr(arg) {
                    FunctionArgExpr::Expr(expr) => self.scan(expr, scope),
                    _ => None,
                })
            })
        })
    }

    /// A function the classifier does not know as a built-in may read anything.
    fn risky(&self, name: &ObjectName) -> Option<Taint> {
        if self.risky.is_empty() {
            return None;
        }
        let display = name.to_string().to_lowercase();
        self.risky
            .iter()
            .any(|entry| {
                entry
                    .strip_prefix(display.as_str())
                    .is_some_and(|rest| rest.starts_with(": "))
            })
            .then(|| {
                Taint::new(format!(
                    "the function `{display}()`, which may read masked columns"
                ))
            })
    }

    /// INSERT, UPDATE, DELETE or MERGE: what its RETURNING list returns; `None` without one.
    fn dml(
        &self,
        statement: &Statement,
        parent: Option<&Scope<'_>>,
    ) -> Result<Option<Outputs>, MaskRefusal> {
        let mut scope = Scope::new(parent);
        let returning = match statement {
            Statement::Insert(insert) => {
                if insert.output.is_some() {
                    return Err(unsupported("an OUTPUT clause"));
                }
                let TableObject::TableName(name) = &insert.table else {
                    return Err(unsupported("INSERT into a table function"));
                };
                let table = TableName::from_object_name(name, self.dialect);
                let label = insert
                    .table_alias
                    .as_ref()
                    .map(|a| lower(&a.alias.value))
                    .unwrap_or_else(|| lower(table.table()));
                let rel = self.resolve(&table, &scope);
                let source = insert
                    .source
                    .as_ref()
                    .and_then(|query| self.nested(query, &scope).any());
                scope.bindings.push(Binding {
                    label,
                    full: Some(lower(table.as_str())),
                    rel,
                });
                // Data copied from a masked column is masked in what RETURNING shows of the row.
                let written = source
                    .or_else(|| {
                        insert
                            .assignments
                            .iter()
                            .find_map(|a| self.scan(&a.value, &scope))
                    })
                    .or_else(|| self.scan(&insert.on, &scope));
                if let (Some(taint), Some(binding)) = (written, scope.bindings.first_mut()) {
                    binding.rel = Rel::tainted(binding.rel.clone(), taint);
                }
                &insert.returning
            }
            Statement::Update(update) => {
                if update.output.is_some() {
                    return Err(unsupported("an OUTPUT clause"));
                }
                self.bind_from(&update.table, &mut scope);
                let targets = scope.bindings.len();
                if let Some(
                    UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
                ) = &update.from
                {
                    for from in from {
                        self.bind_from(from, &mut scope);
                    }
                }
                let written = update
                    .assignments
                    .iter()
                    .find_map(|a| self.scan(&a.value, &scope));
                if let Some(taint) = written {
                    for binding in scope.bindings.iter_mut().take(targets) {
                        binding.rel = Rel::tainted(binding.rel.clone(), taint.clone());
                    }
                }
                &update.returning
            }
            Statement::Delete(delete) => {
                if delete.output.is_some() {
                    return Err(unsupported("an OUTPUT clause"));
                }
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                for from in from.iter().chain(delete.using.iter().flatten()) {
                    self.bind_from(from, &mut scope);
                }
                &delete.returning
            }
            Statement::Merge(merge) => {
                if merge.output.is_some() {
                    return Err(unsupported("MERGE with an OUTPUT or RETURNING clause"));
                }
                return Ok(None);
            }
            _ => return Err(unsupported("this statement inside a query")),
        };
        match returning {
            None => Ok(None),
            Some(items) => Ok(Some(Outputs {
                items: self.items(items, &mut scope, "RETURNING")?,
                all: None,
            })),
        }
    }

    /// Why anything `node` (an expression, or several) computes may be masked data.
    fn scan<V: Visit + ?Sized>(&self, node: &V, scope: &Scope<'_>) -> Option<Taint> {
        let mut scan = Scan {
            analyzer: self,
            scope,
            depth: 0,
            skip: Vec::new(),
            known: Vec::new(),
        };
        match node.visit(&mut scan) {
            ControlFlow::Break(taint) => Some(taint),
            ControlFlow::Continue(()) => None,
        }
    }
}

fn unsupported(what: &str) -> MaskRefusal {
    MaskRefusal::Unsupported(format!(
        "masking cannot follow the data through {what}: name plain columns instead"
    ))
}

/// `* REPLACE (...)`, `* RENAME (...)` and `* AS x` give columns new names or contents.
fn check_wildcard_options(options: &WildcardAdditionalOptions) -> Result<(), MaskRefusal> {
    if options.opt_replace.is_some() || options.opt_rename.is_some() || options.opt_alias.is_some()
    {
        return Err(unsupported("a wildcard with REPLACE, RENAME or an alias"));
    }
    Ok(())
}

/// The name a database gives an unaliased item, when it is certain: a plain column's name.
fn output_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(lower(&ident.value)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|ident| lower(&ident.value)),
        _ => None,
    }
}

fn arg_expr(arg: &FunctionArg) -> &FunctionArgExpr {
    match arg {
        FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg) => arg,
    }
}

/// A `*` or `t.*` argument passes whole rows, except to `count`, which only counts them.
fn wildcard_arg(function: &ObjectName, arg: &FunctionArg, scope: &Scope<'_>) -> Option<Taint> {
    let whole_rows = match arg_expr(arg) {
        FunctionArgExpr::Expr(_) => return None,
        FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => scope.all_rows(),
        FunctionArgExpr::QualifiedWildcard(name) => {
            let qualifier = lower_parts(name);
            scope.rows_of(&qualifier).unwrap_or_else(|| {
                Some(Taint::new(format!(
                    "`{}.*`, which names no relation of this query",
                    qualifier.join(".")
                )))
            })
        }
    };
    if is_count(function) {
        None
    } else {
        whole_rows
    }
}

/// Statements whose results hold no table data: nothing to trace, the by-name rule suffices.
fn returns_no_table_data(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Analyze(_)
            | Statement::Set(_)
            | Statement::Truncate(_)
            | Statement::CreateView(_)
            | Statement::CreateTable(_)
            | Statement::CreateVirtualTable { .. }
            | Statement::CreateIndex(_)
            | Statement::CreateRole(_)
            | Statement::CreatePolicy(_)
            | Statement::CreateExtension(_)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateFunction(_)
            | Statement::CreateTrigger(_)
            | Statement::CreateProcedure { .. }
            | Statement::CreateSequence { .. }
            | Statement::CreateDomain(_)
            | Statement::CreateType { .. }
            | Statement::CreateUser(_)
            | Statement::AlterTable(_)
            | Statement::AlterSchema(_)
            | Statement::AlterIndex { .. }
            | Statement::AlterView { .. }
            | Statement::AlterFunction(_)
            | Statement::AlterType(_)
            | Statement::AlterRole { .. }
            | Statement::AlterPolicy(_)
            | Statement::AlterUser(_)
            | Statement::Drop { .. }
            | Statement::DropFunction(_)
            | Statement::DropDomain(_)
            | Statement::DropProcedure { .. }
            | Statement::DropPolicy(_)
            | Statement::DropExtension(_)
            | Statement::DropTrigger(_)
            | Statement::Declare { .. }
            | Statement::Close { .. }
            | Statement::Discard { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowFunctions { .. }
            | Statement::ShowCollation { .. }
            | Statement::Use(_)
            | Statement::StartTransaction { .. }
            | Statement::Comment { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::Deallocate { .. }
            | Statement::Prepare { .. }
            | Statement::Kill { .. }
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::Pragma { .. }
            | Statement::Lock(_)
            | Statement::LockTables { .. }
            | Statement::UnlockTables
            | Statement::OptimizeTable { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. }
            | Statement::RenameTable(_)
            | Statement::Vacuum(_)
            | Statement::Reset(_)
    )
}

// --- the expression scan --------------------------------------------------------------------

/// Looks through one expression for anything masked. Nested queries are analysed as queries
/// (their outputs, not their filters, count); everything else is reached by sqlparser's
/// visitor, so no expression shape is missed for lack of a case here.
struct Scan<'a, 's> {
    /// For the policy's patterns and the function list.
    analyzer: &'a Analyzer<'a>,
    /// The names the expression can refer to.
    scope: &'s Scope<'s>,
    /// Nesting inside a query already analysed (or skipped): its nodes are not looked at again.
    depth: usize,
    /// `EXISTS (...)` subqueries: they return a boolean, not their rows.
    skip: Vec<*const Query>,
    /// Identifiers already resolved as columns or function names, next to be visited last.
    known: Vec<*const Ident>,
}

impl Visitor for Scan<'_, '_> {
    type Break = Taint;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Taint> {
        let seen = self.depth > 0 || self.skip.iter().any(|q| std::ptr::eq(*q, query));
        self.depth += 1;
        if seen {
            return ControlFlow::Continue(());
        }
        match self.analyzer.nested(query, self.scope).any() {
            Some(taint) => ControlFlow::Break(taint),
            None => ControlFlow::Continue(()),
        }
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Taint> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Taint> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        let names = self.analyzer.names;
        let found = match expr {
            Expr::Identifier(ident) => {
                self.known.push(ident as *const Ident);
                let name = lower(&ident.value);
                self.scope
                    .unqualified(names, &name)
                    .or_else(|| self.scope.rows_of(std::slice::from_ref(&name)).flatten())
            }
            Expr::CompoundIdentifier(parts) => {
                self.known
                    .extend(parts.iter().rev().map(|ident| ident as *const Ident));
                let lowered: Vec<String> = parts.iter().map(|i| lower(&i.value)).collect();
                match lowered.split_last() {
                    None => None,
                    Some((column, [])) => self.scope.unqualified(names, column),
                    Some((column, qualifier)) => self
                        .scope
                        .qualified(names, qualifier, column)
                        .or_else(|| self.scope.rows_of(&lowered).flatten()),
                }
            }
            Expr::Exists { subquery, .. } => {
                self.skip.push(&**subquery as *const Query);
                None
            }
            Expr::Function(function) => {
                self.known
                    .extend(function.name.0.iter().rev().filter_map(|part| match part {
                        ObjectNamePart::Identifier(ident) => Some(ident as *const Ident),
                        ObjectNamePart::Function(_) => None,
                    }));
                self.analyzer.risky(&function.name).or_else(|| {
                    [&function.parameters, &function.args]
                        .into_iter()
                        .filter_map(|args| match args {
                            FunctionArguments::List(list) => Some(list.args.iter()),
                            _ => None,
                        })
                        .flatten()
                        .find_map(|arg| wildcard_arg(&function.name, arg, self.scope))
                })
            }
            Expr::Wildcard(_) => self.scope.all_rows(),
            Expr::QualifiedWildcard(name, _) => {
                let qualifier = lower_parts(name);
                self.scope
                    .rows_of(&qualifier)
                    .unwrap_or_else(|| Some(Taint::new(format!("`{name}.*`"))))
            }
            _ => None,
        };
        match found {
            Some(taint) => ControlFlow::Break(taint),
            None => ControlFlow::Continue(()),
        }
    }

    /// Any other identifier (a struct field, a named argument, a MATCH column list, a shape
    /// this scan has no case for) is masked when its name is.
    fn pre_visit_ident(&mut self, ident: &Ident) -> ControlFlow<Taint> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        if self
            .known
            .last()
            .is_some_and(|known| std::ptr::eq(*known, ident))
        {
            self.known.pop();
            return ControlFlow::Continue(());
        }
        if self.analyzer.names.masks(None, &ident.value) {
            return ControlFlow::Break(Taint::column(&ident.value));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[[targets]]
name = "prod"
driver = "postgres"

[roles.dba]
members = ["console:bob"]

[[permissions]]
role = "dba"
categories = ["read", "write"]

[masking]
columns = ["email", "ssn", "*password*", "users.phone"]
"#;

    fn policy_with(columns: &str) -> Policy {
        let text = POLICY.replace(
            r#"columns = ["email", "ssn", "*password*", "users.phone"]"#,
            &format!("columns = {columns}"),
        );
        Policy::from_str(&text, "masking.toml").unwrap_or_else(|e| panic!("test policy: {e}"))
    }

    fn policy() -> Policy {
        policy_with(r#"["email", "ssn", "*password*", "users.phone"]"#)
    }

    fn mask_in(dialect: Dialect, sql: &str, columns: &[&str]) -> Vec<bool> {
        match plan_masking(sql, dialect, &policy()) {
            Ok(plan) => plan.columns_to_mask(columns),
            Err(refusal) => panic!("{sql}: refused: {refusal}"),
        }
    }

    fn mask(sql: &str, columns: &[&str]) -> Vec<bool> {
        mask_in(Dialect::Postgres, sql, columns)
    }

    fn refusal_in(dialect: Dialect, sql: &str) -> MaskRefusal {
        match plan_masking(sql, dialect, &policy()) {
            Ok(plan) => panic!("{sql}: planned instead of refused: {plan:?}"),
            Err(refusal) => refusal,
        }
    }

    fn refusal(sql: &str) -> MaskRefusal {
        refusal_in(Dialect::Postgres, sql)
    }

    const USERS: &[&str] = &["id", "name", "email", "phone", "password_hash", "ssn"];

    #[test]
    fn a_masked_column_is_masked_by_position_and_by_name() {
        assert_eq!(
            mask("SELECT id, email FROM users", &["id", "email"]),
            [false, true]
        );
        assert_eq!(
            mask("SELECT u.id, u.ssn FROM users u", &["id", "ssn"]),
            [false, true]
        );
    }

    #[test]
    fn an_alias_does_not_hide_a_masked_column() {
        assert_eq!(
            mask("SELECT id, email AS e FROM users", &["id", "e"]),
            [false, true]
        );
        assert_eq!(mask("SELECT password_hash h FROM accounts", &["h"]), [true]);
    }

    #[test]
    fn expressions_over_a_masked_column_are_masked() {
        let sql = "SELECT lower(email), email || '', \
                   CASE WHEN id > 0 THEN email ELSE 'none' END AS c, \
                   CAST(ssn AS text) AS s, email::varchar AS v, \
                   json_build_object('k', email) AS j, id \
                   FROM users";
        let names = ["lower", "?column?", "c", "s", "v", "j", "id"];
        assert_eq!(
            mask(sql, &names),
            [true, true, true, true, true, true, false]
        );
    }

    #[test]
    fn whole_row_references_are_masked() {
        assert_eq!(
            mask("SELECT row_to_json(u) FROM users u", &["row_to_json"]),
            [true]
        );
        assert_eq!(
            mask("SELECT to_jsonb(users) AS j FROM users", &["j"]),
            [true]
        );
        assert_eq!(mask("SELECT u FROM users u", &["u"]), [true]);
        assert_eq!(
            mask("SELECT to_jsonb(u.*) AS j FROM users u", &["j"]),
            [true]
        );
        assert_eq!(mask("SELECT (u).email AS e FROM users u", &["e"]), [true]);
        assert_eq!(
            mask(
                "SELECT json_agg(u) AS j, count(*) AS n FROM users u",
                &["j", "n"]
            ),
            [true, false]
        );
    }

    #[test]
    fn select_star_from_a_table_masks_by_name() {
        let expected = [false, false, true, true, true, true];
        assert_eq!(mask("SELECT * FROM users", USERS), expected);
        assert_eq!(mask("SELECT u.* FROM users u", USERS), expected);
        assert_eq!(
            mask("WITH c AS (SELECT * FROM users) TABLE c", USERS),
            expected
        );
        // The same table through a derived table that keeps the names.
        assert_eq!(
            mask("SELECT t.* FROM (SELECT * FROM users) t", USERS),
            expected
        );
        assert_eq!(
            mask(
                "SELECT * FROM (SELECT id, email FROM users) s",
                &["id", "email"]
            ),
            [false, true]
        );
    }

    #[test]
    fn a_derived_table_that_renames_a_masked_column_masks_the_new_name() {
        assert_eq!(
            mask("SELECT x FROM (SELECT email AS x FROM users) s", &["x"]),
            [true]
        );
        assert_eq!(
            mask(
                "SELECT s.x AS y, s.id FROM (SELECT id, email AS x FROM users) s",
                &["y", "id"]
            ),
            [true, false]
        );
        // Unquoted names fold: `X` is `x`.
        assert_eq!(
            mask("SELECT X FROM (SELECT email AS x FROM users) s", &["x"]),
            [true]
        );
    }

    #[test]
    fn a_cte_that_renames_a_masked_column_masks_the_new_name() {
        let sql = "WITH c AS (SELECT id, email AS x FROM users) SELECT id, x FROM c";
        assert_eq!(mask(sql, &["id", "x"]), [false, true]);
        let chained = "WITH a AS (SELECT ssn AS y FROM people), b AS (SELECT y AS z FROM a) \
                       SELECT upper(z) FROM b";
        assert_eq!(mask(chained, &["upper"]), [true]);
    }

    #[test]
    fn a_cte_column_list_over_a_masked_column_is_masked_or_refused() {
        assert_eq!(
            mask(
                "WITH c(x) AS (SELECT email FROM users) SELECT x FROM c",
                &["x"]
            ),
            [true]
        );
        let refused = refusal("WITH c(x) AS (SELECT email FROM users) SELECT * FROM c");
        assert!(
            matches!(&refused, MaskRefusal::HiddenByWildcard { data, .. } if data.contains("email")),
            "{refused:?}"
        );
        assert_eq!(
            refused.to_string(),
            "`SELECT *` over `c`, which shows the masked column `email` under another name: \
             name the columns you need"
        );
        // A column list over a body with a masked output masks every listed name.
        assert_eq!(
            mask(
                "SELECT a FROM (SELECT id, email FROM users) s(a, b)",
                &["a"]
            ),
            [true]
        );
        assert_eq!(
            mask("SELECT a FROM (SELECT id, name FROM users) s(a, b)", &["a"]),
            [false]
        );
        assert_eq!(mask("SELECT a FROM users AS u(a, b)", &["a"]), [true]);
        let clean = "WITH c AS (SELECT id, name FROM users) SELECT a, b FROM c AS x(a, b)";
        assert_eq!(mask(clean, &["a", "b"]), [false, false]);
        let masked = "WITH c AS (SELECT id, email FROM users) SELECT a, b FROM c AS x(a, b)";
        assert_eq!(mask(masked, &["a", "b"]), [true, true]);
    }

    #[test]
    fn select_star_over_a_rename_is_refused_naming_the_column() {
        for sql in [
            "SELECT * FROM (SELECT email AS x FROM users) s",
            "SELECT s.* FROM (SELECT email AS x FROM users) s",
            "WITH c AS (SELECT lower(email) FROM users) SELECT * FROM c",
            "SELECT * FROM orders o JOIN (SELECT id, ssn AS x FROM people) p ON p.id = o.id",
            "SELECT * FROM unnest(ARRAY(SELECT email FROM users)) AS t(v)",
            "WITH c AS (SELECT email AS x FROM users) TABLE c",
        ] {
            let refused = refusal(sql);
            assert!(
                matches!(&refused, MaskRefusal::HiddenByWildcard { .. }),
                "{sql}: {refused:?}"
            );
            let message = refused.to_string();
            assert!(
                message.contains("email") || message.contains("ssn"),
                "{sql}: {message}"
            );
        }
    }

    #[test]
    fn a_scalar_subquery_of_a_masked_column_is_masked() {
        let sql = "SELECT o.id, (SELECT u.email FROM users u WHERE u.id = o.user_id) AS contact \
                   FROM orders o";
        assert_eq!(mask(sql, &["id", "contact"]), [false, true]);
        let count = "SELECT (SELECT count(*) FROM users) AS n";
        assert_eq!(mask(count, &["n"]), [false]);
        let exists = "SELECT EXISTS (SELECT 1 FROM users WHERE email = 'x') AS found";
        assert_eq!(mask(exists, &["found"]), [false]);
    }

    #[test]
    fn set_operations_combine_branches_per_position() {
        let sql = "SELECT id, name FROM orders UNION ALL SELECT id, email FROM users";
        assert_eq!(mask(sql, &["id", "name"]), [false, true]);
        let derived = "SELECT x FROM (SELECT note AS x FROM orders UNION SELECT ssn FROM people) s";
        assert_eq!(mask(derived, &["x"]), [true]);
        for sql in [
            "SELECT id, name FROM orders UNION SELECT * FROM people",
            "SELECT id, name FROM orders UNION TABLE people",
        ] {
            let refused = refusal(sql);
            assert!(
                matches!(refused, MaskRefusal::WildcardInLaterBranch { .. }),
                "{sql}: {refused:?}"
            );
        }
    }

    #[test]
    fn returning_is_masked_like_a_select_list() {
        let update = "UPDATE users SET name = 'x' WHERE id = 1 RETURNING id, email AS e, name";
        assert_eq!(mask(update, &["id", "e", "name"]), [false, true, false]);
        let delete = "DELETE FROM users WHERE id = 1 RETURNING *";
        assert_eq!(mask(delete, USERS), [false, false, true, true, true, true]);
        // Data copied out of a masked column is masked in what comes back.
        let insert = "INSERT INTO notes (body) SELECT email FROM users RETURNING id, body";
        assert_eq!(mask(insert, &["id", "body"]), [true, true]);
        let plain = "INSERT INTO notes (body) VALUES ('hi') RETURNING id, body";
        assert_eq!(mask(plain, &["id", "body"]), [false, false]);
        let set = "UPDATE notes SET body = u.email FROM users u WHERE u.id = notes.user_id RETURNING notes.body";
        assert_eq!(mask(set, &["body"]), [true]);
        let cte = "WITH d AS (DELETE FROM users WHERE id = 1 RETURNING email AS x) SELECT x FROM d";
        assert_eq!(mask(cte, &["x"]), [true]);
    }

    #[test]
    fn harmless_queries_mask_nothing() {
        assert_eq!(
            mask(
                "SELECT id, name FROM users WHERE email = 'x'",
                &["id", "name"]
            ),
            [false, false]
        );
        assert_eq!(mask("SELECT count(*) FROM users", &["count"]), [false]);
        assert_eq!(
            mask("SELECT price * qty FROM orders", &["?column?"]),
            [false]
        );
        assert_eq!(
            mask(
                "SELECT id FROM (SELECT id FROM users WHERE email LIKE '%x') s",
                &["id"]
            ),
            [false]
        );
        assert_eq!(
            mask("SELECT abs(total), now() FROM orders", &["abs", "now"]),
            [false, false]
        );
        assert_eq!(mask("SELECT 1", &["?column?"]), [false]);
    }

    #[test]
    fn a_table_qualified_pattern_follows_the_alias() {
        assert_eq!(
            mask("SELECT u.phone AS contact FROM users u", &["contact"]),
            [true]
        );
        assert_eq!(
            mask(
                "SELECT u.phone AS contact FROM public.users u",
                &["contact"]
            ),
            [true]
        );
        assert_eq!(
            mask("SELECT o.phone AS contact FROM orders o", &["contact"]),
            [false]
        );
        // A column named `phone` of unknown table is masked (fail closed), here by name.
        assert_eq!(mask("SELECT o.phone FROM orders o", &["phone"]), [true]);
    }

    #[test]
    fn mysql_and_sqlite_follow_the_same_rules() {
        let my = Dialect::Mysql;
        assert_eq!(
            mask_in(my, "SELECT `email` AS e, name FROM users", &["e", "name"]),
            [true, false]
        );
        assert_eq!(
            mask_in(my, "SELECT x FROM (SELECT email AS x FROM users) s", &["x"]),
            [true]
        );
        assert_eq!(
            mask_in(my, "SELECT * FROM users", USERS),
            [false, false, true, true, true, true]
        );
        assert!(matches!(
            refusal_in(my, "SELECT * FROM (SELECT email AS x FROM users) s"),
            MaskRefusal::HiddenByWildcard { .. }
        ));
        let lite = Dialect::Sqlite;
        let cte = "WITH c AS (SELECT email AS x FROM users) SELECT x FROM c";
        assert_eq!(mask_in(lite, cte, &["x"]), [true]);
        assert_eq!(
            mask_in(
                lite,
                "SELECT lower(email), id FROM users",
                &["lower(email)", "id"]
            ),
            [true, false]
        );
        assert_eq!(
            mask_in(lite, "SELECT count(*) FROM users", &["count(*)"]),
            [false]
        );
    }

    #[test]
    fn explicit_items_around_wildcards_keep_their_positions() {
        let after = "SELECT *, lower(email) AS l FROM orders";
        assert_eq!(mask(after, &["id", "total", "l"]), [false, false, true]);
        assert_eq!(mask(after, &["id", "l"]), [false, true]);
        let before = "SELECT upper(ssn) AS s, * FROM orders";
        assert_eq!(mask(before, &["s", "id", "total"]), [true, false, false]);
        let refused = refusal("SELECT *, lower(email) AS l, * FROM users");
        assert!(
            matches!(refused, MaskRefusal::BetweenWildcards { .. }),
            "{refused:?}"
        );
        // Between wildcards, a name the by-name rule catches is safe wherever it lands.
        let by_name = "SELECT o.*, u.email, o.* FROM orders o, users u";
        assert_eq!(mask(by_name, &["id", "email", "id"]), [false, true, false]);
    }

    #[test]
    fn calls_to_functions_countersign_cannot_see_into_are_masked() {
        assert_eq!(
            mask("SELECT get_contact(id) AS c, id FROM users", &["c", "id"]),
            [true, false]
        );
        assert_eq!(
            mask(
                "SELECT v FROM unnest(ARRAY(SELECT email FROM users)) AS t(v)",
                &["v"]
            ),
            [true]
        );
        assert_eq!(
            mask("SELECT g FROM generate_series(1, 3) AS g", &["g"]),
            [false]
        );
    }

    #[test]
    fn lateral_and_correlated_references_are_followed() {
        let lateral = "SELECT s.x FROM users u, LATERAL (SELECT u.email AS x) s";
        assert_eq!(mask(lateral, &["x"]), [true]);
        let alias = "SELECT email AS x, x || '' AS y FROM users";
        assert_eq!(mask(alias, &["x", "y"]), [true, true]);
    }

    #[test]
    fn recursive_ctes_mask_everything_they_return_once_masked_data_enters() {
        let tainted = "WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM users \
                       UNION ALL SELECT n + 1, e FROM r WHERE n < 3) SELECT n FROM r";
        assert_eq!(mask(tainted, &["n"]), [true]);
        let clean = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
                     SELECT n FROM r";
        assert_eq!(mask(clean, &["n"]), [false]);
    }

    #[test]
    fn statements_without_result_columns_still_mask_by_name() {
        let plan = plan_masking(
            "UPDATE users SET email = 'x' WHERE id = 1",
            Dialect::Postgres,
            &policy(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!plan.is_empty());
        assert_eq!(plan.columns_to_mask(&[]), Vec::<bool>::new());
        assert_eq!(plan.columns_to_mask(&["email", "id"]), [true, false]);
        assert_eq!(mask("CREATE TABLE t (email text)", &[]), Vec::<bool>::new());
        assert_eq!(
            mask("EXPLAIN SELECT email FROM users", &["QUERY PLAN"]),
            [false]
        );
    }

    #[test]
    fn what_cannot_be_read_or_traced_is_refused() {
        assert!(matches!(
            refusal("SELECT email FROM"),
            MaskRefusal::Unreadable(_)
        ));
        assert!(matches!(refusal(""), MaskRefusal::Unreadable(_)));
        assert!(matches!(
            refusal("SELECT 1; SELECT email FROM users"),
            MaskRefusal::MultipleStatements
        ));
        assert!(matches!(
            refusal("EXECUTE leak"),
            MaskRefusal::Unsupported(_)
        ));
        assert!(matches!(
            refusal("CALL dump_users()"),
            MaskRefusal::Unsupported(_)
        ));
        assert!(matches!(
            refusal("FETCH ALL FROM c"),
            MaskRefusal::Unsupported(_)
        ));
        assert!(matches!(
            refusal("COPY users TO STDOUT"),
            MaskRefusal::Unsupported(_)
        ));
        let mysql = refusal_in(Dialect::Mysql, "SELECT /*!50000 email */ FROM users");
        assert!(matches!(mysql, MaskRefusal::Unreadable(_)), "{mysql:?}");
    }

    #[test]
    fn a_different_column_count_than_planned_masks_everything() {
        assert_eq!(
            mask("SELECT id, name FROM users", &["id", "name", "extra"]),
            [true, true, true]
        );
    }

    #[test]
    fn a_policy_without_masking_plans_nothing() {
        let text = POLICY.replace(
            r#"columns = ["email", "ssn", "*password*", "users.phone"]"#,
            "columns = []",
        );
        let policy = Policy::from_str(&text, "none.toml").unwrap_or_else(|e| panic!("{e}"));
        let plan = plan_masking(
            "SELECT email FROM users; DROP TABLE x",
            Dialect::Postgres,
            &policy,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(plan.is_empty());
        assert_eq!(plan.columns_to_mask(&["email"]), [false]);
        assert!(MaskPlan::none().is_empty());
    }

    #[test]
    fn deeply_nested_input_is_planned_without_overflowing_the_stack() {
        let sql = format!("SELECT id{} AS x FROM users", " || email".repeat(6000));
        assert_eq!(mask(&sql, &["x"]), [true]);
    }

    #[test]
    fn the_by_name_rule_answers_as_the_policy_does() {
        let policy = policy_with(
            r#"["email", "*.ssn", "users.phone", "*password*", "hr.pay*", "users.", "a.{b,c}", "x.ph?ne", "t.*tok*", "K.kelvin"]"#,
        );
        let names = NameMatcher::new(&policy.masking().columns);
        let columns = [
            "email",
            "EMAIL",
            "ssn",
            "phone",
            "Phone",
            "password_hash",
            "salary",
            "b",
            "c",
            "phxne",
            "mytoken",
            "\u{212A}elvin",
            "kelvin",
            "id",
            "",
            "users.phone",
        ];
        let tables = [
            None,
            Some("users"),
            Some("public.users"),
            Some("hr.payroll"),
            Some("orders"),
            Some("a"),
            Some("x"),
        ];
        for table in tables {
            for column in columns {
                assert_eq!(
                    names.masks(table, column),
                    policy.masks_column(table, column),
                    "{table:?}.{column}"
                );
            }
        }
    }

    #[test]
    fn plans_can_cross_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<MaskPlan>();
    }
}
