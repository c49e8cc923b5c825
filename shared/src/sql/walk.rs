//! The walk over every node of a statement: what the top level does not show.
//!
//! sqlparser's derived visitor reaches every nested statement, query, SELECT, relation, table
//! factor and expression, so nothing is missed for lack of a hand-written case. The walk keeps
//! two stacks: one frame per statement (does it run, and how are the relations it names
//! counted) and one scope per WITH clause (which names are CTEs, not tables, and where).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArguments, ObjectName, ObjectNamePart, Query, Select,
    SetExpr, Statement, TableFactor, Visit, Visitor,
};

use super::functions::{self, FunctionKind};
use super::names::{is_only_keyword, TableName};
use super::statement::{self, Targets};
use super::{Category, ClassifyError, Dialect, Flag, StatementClass};

/// Classifies one top-level statement and everything nested in it.
pub(crate) fn classify_statement(
    statement: &Statement,
    dialect: Dialect,
    pure_functions: &BTreeSet<String>,
) -> Result<StatementClass, ClassifyError> {
    let mut walk = Walk::new(dialect, pure_functions);
    if let ControlFlow::Break(error) = statement.visit(&mut walk) {
        return Err(error);
    }
    Ok(walk.finish())
}

/// One statement being walked.
struct Frame {
    /// Query depth when the statement was entered: deeper relations are read by a query.
    query_depth: usize,
    /// How relations named directly by the statement are counted.
    targets: Targets,
}

/// The CTE names one WITH clause brings into scope.
struct CteScope {
    /// The query that owns the WITH clause.
    owner: *const Query,
    /// CTE names, folded as the target folds them.
    names: Vec<String>,
    /// Each CTE's body, to know which CTE is being walked.
    bodies: Vec<*const Query>,
    /// WITH RECURSIVE: every name is visible in every body.
    recursive: bool,
    /// How many names (from the first) are visible at this point of the walk.
    visible: usize,
}

struct Walk<'o> {
    dialect: Dialect,
    pure_functions: &'o BTreeSet<String>,
    category: Category,
    verbs: Vec<String>,
    tables_read: Vec<TableName>,
    tables_written: Vec<TableName>,
    has_where: Option<bool>,
    flags: BTreeSet<Flag>,
    risky_functions: Vec<String>,
    reasons: Vec<String>,
    frames: Vec<Frame>,
    scopes: Vec<CteScope>,
    /// CTE bodies being walked, innermost last.
    cte_bodies: Vec<*const Query>,
    query_depth: usize,
    /// Relation nodes already accounted for (write targets, table functions, `FROM ONLY`).
    handled: Vec<*const ObjectName>,
}

impl<'o> Walk<'o> {
    fn new(dialect: Dialect, pure_functions: &'o BTreeSet<String>) -> Walk<'o> {
        Walk {
            dialect,
            pure_functions,
            category: Category::Read,
            verbs: Vec::new(),
            tables_read: Vec::new(),
            tables_written: Vec::new(),
            has_where: None,
            flags: BTreeSet::new(),
            risky_functions: Vec::new(),
            reasons: Vec::new(),
            frames: Vec::new(),
            scopes: Vec::new(),
            cte_bodies: Vec::new(),
            query_depth: 0,
            handled: Vec::new(),
        }
    }

    fn finish(self) -> StatementClass {
        StatementClass {
            category: self.category,
            verbs: self.verbs,
            tables_read: self.tables_read,
            tables_written: self.tables_written,
            has_where: self.has_where,
            flags: self.flags,
            risky_functions: self.risky_functions,
            reasons: self.reasons,
        }
    }

    fn escalate(&mut self, category: Category, reason: Option<String>) {
        self.category = self.category.max(category);
        if let Some(reason) = reason {
            if !self.reasons.contains(&reason) {
                self.reasons.push(reason);
            }
        }
    }

    fn read(&mut self, table: TableName) {
        if !self.tables_read.contains(&table) {
            self.tables_read.push(table);
        }
    }

    fn written(&mut self, table: TableName) {
        if !self.tables_written.contains(&table) {
            self.tables_written.push(table);
        }
    }

    /// Counts a relation named at this point of the walk as read or written.
    fn relation(&mut self, table: TableName) {
        let Some(frame) = self.frames.last() else {
            return self.read(table);
        };
        let direct = self.query_depth <= frame.query_depth;
        if direct && frame.targets == Targets::All {
            self.written(table);
        } else {
            self.read(table);
        }
    }

    fn is_cte_name(&self, name: &ObjectName) -> bool {
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return false;
        };
        if self.scopes.is_empty() {
            return false;
        }
        let folded = self
            .dialect
            .fold_identifier(&ident.value, ident.quote_style.is_some());
        self.scopes
            .iter()
            .any(|scope| scope.names[..scope.visible].contains(&folded))
    }

    /// Notes a call; `function` is absent for table functions in FROM (arguments unknown).
    fn call(&mut self, name: &ObjectName, function: Option<&Function>) {
        let has_arguments = function.is_none_or(|f| has_arguments(&f.args));
        let (category, why, flag) =
            match functions::lookup(name, self.dialect, has_arguments, self.pure_functions) {
                FunctionKind::Pure => return,
                FunctionKind::SideEffect(category, why) => {
                    (category, why, Flag::SideEffectFunction)
                }
                FunctionKind::Unknown => (
                    Category::Unknown,
                    "is not known to be free of side effects",
                    Flag::UnknownFunction,
                ),
            };
        let display = name.to_string().to_lowercase();
        self.flags.insert(flag);
        self.note_function(&display, why);
        self.escalate(category, Some(format!("calls {display}(), which {why}")));
    }

    fn note_function(&mut self, name: &str, why: &str) {
        let entry = format!("{name}: {why}");
        if !self.risky_functions.contains(&entry) {
            self.risky_functions.push(entry);
        }
    }

    /// `TABLE t` names its table as plain strings, which the visitor does not see as a relation.
    fn table_commands(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Table(table) => {
                let parts = [&table.schema_name, &table.table_name]
                    .into_iter()
                    .flatten()
                    .map(|p| self.dialect.fold_identifier(p, false))
                    .collect();
                self.read(TableName::from_parts(parts));
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.table_commands(left);
                self.table_commands(right);
            }
            _ => {}
        }
    }
}

impl Visitor for Walk<'_> {
    type Break = ClassifyError;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<ClassifyError> {
        let base = match statement::base(statement, self.dialect) {
            Ok(base) => base,
            Err(error) => return ControlFlow::Break(error),
        };
        let nested = !self.frames.is_empty();
        let mut targets = Vec::with_capacity(base.target_nodes.len() + base.other_targets.len());
        for (node, table) in base.target_nodes {
            self.handled.push(node as *const ObjectName);
            targets.push(table);
        }
        targets.extend(base.other_targets);
        {
            if !base.verb.is_empty() && !self.verbs.contains(&base.verb) {
                self.verbs.push(base.verb);
            }
            for table in targets {
                self.written(table);
            }
            self.flags.extend(base.flags);
            if let Some(has_where) = base.has_where {
                self.has_where = Some(self.has_where.unwrap_or(true) && has_where);
                if !has_where {
                    self.flags.insert(Flag::MissingWhere);
                }
            }
            if nested && base.category == Category::Write && !self.cte_bodies.is_empty() {
                self.flags.insert(Flag::WritableCte);
                self.escalate(
                    Category::Write,
                    Some("a WITH clause holds a statement that changes data".into()),
                );
            }
            self.escalate(base.category, base.reason);
        }
        for table in base.other_reads {
            self.read(table);
        }
        self.frames.push(Frame {
            query_depth: self.query_depth,
            targets: base.targets,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<ClassifyError> {
        self.frames.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<ClassifyError> {
        self.query_depth += 1;
        let ptr = query as *const Query;
        if let Some(scope) = self.scopes.last_mut() {
            if let Some(i) = scope.bodies.iter().position(|b| std::ptr::eq(*b, ptr)) {
                // A non-recursive CTE sees only the CTEs before it: a same-named table inside
                // its own body is the real table.
                scope.visible = if scope.recursive {
                    scope.names.len()
                } else {
                    i
                };
                self.cte_bodies.push(ptr);
            }
        }
        if let Some(with) = &query.with {
            self.scopes.push(CteScope {
                owner: ptr,
                names: with
                    .cte_tables
                    .iter()
                    .map(|cte| {
                        let ident = &cte.alias.name;
                        self.dialect
                            .fold_identifier(&ident.value, ident.quote_style.is_some())
                    })
                    .collect(),
                bodies: with
                    .cte_tables
                    .iter()
                    .map(|c| &*c.query as *const Query)
                    .collect(),
                recursive: with.recursive,
                visible: 0,
            });
        }
        if !query.locks.is_empty() {
            self.flags.insert(Flag::LockingClause);
            self.escalate(
                Category::Write,
                Some("a locking clause (FOR UPDATE/SHARE) takes row locks".into()),
            );
        }
        self.table_commands(&query.body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<ClassifyError> {
        let ptr = query as *const Query;
        if self
            .scopes
            .last()
            .is_some_and(|s| std::ptr::eq(s.owner, ptr))
        {
            self.scopes.pop();
        }
        if self
            .cte_bodies
            .last()
            .is_some_and(|b| std::ptr::eq(*b, ptr))
        {
            self.cte_bodies.pop();
            if let Some(scope) = self.scopes.last_mut() {
                if let Some(i) = scope.bodies.iter().position(|b| std::ptr::eq(*b, ptr)) {
                    scope.visible = if scope.recursive {
                        scope.names.len()
                    } else {
                        i + 1
                    };
                }
            }
        }
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &Select) -> ControlFlow<ClassifyError> {
        let Some(into) = &select.into else {
            return ControlFlow::Continue(());
        };
        self.flags.insert(Flag::SelectInto);
        let variables_only = into.targets.iter().all(|t| match t {
            Expr::Identifier(ident) => ident.value.starts_with('@'),
            _ => false,
        });
        if variables_only && self.dialect == Dialect::Mysql {
            self.escalate(
                Category::Session,
                Some("SELECT ... INTO sets session variables".into()),
            );
        } else {
            for target in &into.targets {
                let table = match target {
                    Expr::Identifier(ident) => TableName::from_ident(ident, self.dialect),
                    other => TableName::from_parts(vec![other.to_string()]),
                };
                self.written(table);
            }
            self.escalate(
                Category::Ddl,
                Some("SELECT ... INTO creates a new table".into()),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<ClassifyError> {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let ptr = name as *const ObjectName;
                if self.handled.iter().any(|h| std::ptr::eq(*h, ptr)) {
                    // A write target, already counted.
                } else if is_only_keyword(name) {
                    // sqlparser reads `FROM ONLY t` as a table named ONLY with alias t.
                    self.handled.push(name as *const ObjectName);
                    match (alias, args) {
                        (Some(alias), None) if !alias.explicit => {
                            let table = TableName::from_ident(&alias.name, self.dialect);
                            self.relation(table);
                        }
                        _ => {
                            return ControlFlow::Break(ClassifyError::Unsupported(
                                "not supported: this form of ONLY; write `ONLY table_name`".into(),
                            ))
                        }
                    }
                } else if args.is_some() {
                    // A table function such as generate_series(...) in FROM.
                    self.handled.push(name as *const ObjectName);
                    self.call(name, None);
                }
            }
            TableFactor::Function { name, .. } => self.call(name, None),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<ClassifyError> {
        let ptr = name as *const ObjectName;
        if self.handled.iter().any(|h| std::ptr::eq(*h, ptr)) || self.is_cte_name(name) {
            return ControlFlow::Continue(());
        }
        self.relation(TableName::from_object_name(name, self.dialect));
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<ClassifyError> {
        match expr {
            // sqlparser reads PostgreSQL's `SELECT INTO new_table FROM t` (no columns) as a
            // column named INTO: a reserved word is never a bare column name, so refuse it.
            Expr::Identifier(ident)
                if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("into") =>
            {
                return ControlFlow::Break(ClassifyError::Unsupported(
                    "not supported: SELECT INTO without a column list".into(),
                ));
            }
            Expr::Function(function) => self.call(&function.name, Some(function)),
            Expr::BinaryOp {
                op: BinaryOperator::Assignment,
                ..
            } => {
                self.flags.insert(Flag::VariableAssignment);
                self.escalate(
                    Category::Session,
                    Some("assigns a session variable (:=)".into()),
                );
            }
            Expr::BinaryOp {
                op: BinaryOperator::PGCustomBinaryOperator(parts),
                ..
            } => {
                self.escalate(
                    Category::Unknown,
                    Some(format!(
                        "uses the operator OPERATOR({}), which is not known to be free of side effects",
                        parts.join(".")
                    )),
                );
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn has_arguments(args: &FunctionArguments) -> bool {
    match args {
        FunctionArguments::None => false,
        FunctionArguments::Subquery(_) => true,
        FunctionArguments::List(list) => !list.args.is_empty(),
    }
}
