//! The AST walk: `Collector` gathers a [`StatementInfo`] while sqlparser's `Visitor` walks a statement.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

use sqlparser::ast::{
    DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, TableFactor, Visit, Visitor,
};

use super::functions::expr_string;
use super::names::{last_part, name_from_string, norm_ident, norm_name};
use super::statements::{explain_executes, prepared_statement_name};
use super::{ANY_COLUMN, StatementInfo};

pub(super) fn classify_statement(
    statement: &Statement,
    renamed: bool,
    nesting: usize,
) -> StatementInfo {
    let mut c = Collector::new(nesting);
    match statement {
        Statement::Prepare { name, .. } => c.info.prepares = Some(norm_ident(name)),
        Statement::Deallocate { name, .. } => {
            c.info.deallocates = Some(
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("ALL") {
                    None
                } else {
                    Some(norm_ident(name))
                },
            );
        }
        Statement::Execute { .. } => c.info.executes = prepared_statement_name(statement),
        // EXPLAIN [ANALYZE] EXECUTE p: the caller substitutes p's info as for a plain EXECUTE.
        Statement::Explain {
            statement: inner, ..
        } => c.info.executes = prepared_statement_name(inner),
        _ => {}
    }
    let _ = statement.visit(&mut c);
    if renamed && c.info.kinds.contains("alter") {
        c.info.kinds.insert("rename");
    }
    c.finish()
}

struct CteScope {
    /// CTE name → position in the WITH list (first definition).
    names: HashMap<String, usize>,
    count: usize,
    recursive: bool,
    /// How many CTE bodies of this WITH have been walked (a non-recursive CTE sees only the earlier ones).
    done: usize,
}

pub(super) struct Collector {
    pub(super) info: StatementInfo,
    pub(super) nesting: usize,
    scopes: Vec<CteScope>,
    /// > 0 while inside a plain (non-ANALYZE) EXPLAIN: names count, kinds and without_where do not.
    pub(super) explain_only: usize,
    /// The name of the TableFactor::Table being visited; its relation visit is handled by the table factor.
    table_factor_name: Option<*const ObjectName>,
    /// Table names (last part), aliases and CTE names: a column with such a name is a whole-row reference.
    row_names: BTreeSet<String>,
    /// The root of `t.col[...]` (CompoundFieldAccess): a qualifier, not a column.
    qualifier: Option<*const Expr>,
}

impl Collector {
    pub(super) fn new(nesting: usize) -> Self {
        Collector {
            info: StatementInfo::default(),
            nesting,
            scopes: Vec::new(),
            explain_only: 0,
            table_factor_name: None,
            row_names: BTreeSet::new(),
            qualifier: None,
        }
    }

    fn finish(mut self) -> StatementInfo {
        if self.info.columns.iter().any(|c| self.row_names.contains(c)) {
            self.whole_row();
        }
        self.info
    }

    /// A whole row as one value (`SELECT c FROM customers c`,
    /// `row_to_json(c.*)`): it carries every column of the row.
    fn whole_row(&mut self) {
        self.info.columns.insert(ANY_COLUMN.to_string());
    }

    pub(super) fn kind(&mut self, k: &'static str) {
        if self.explain_only == 0 {
            self.info.kinds.insert(k);
        }
    }

    pub(super) fn no_where(&mut self) {
        if self.explain_only == 0 {
            self.info.without_where = true;
        }
    }

    pub(super) fn table(&mut self, name: &ObjectName) {
        self.info.tables.insert(norm_name(name));
        if let Some(last) = last_part(name) {
            self.row_names.insert(last);
        }
    }

    pub(super) fn table_str(&mut self, name: String) {
        if let Some(last) = name.rsplit('.').next() {
            self.row_names.insert(last.to_string());
        }
        self.info.tables.insert(name);
    }

    pub(super) fn schema_wide(&mut self, schema: &ObjectName) {
        self.info.tables.insert(format!("{}.*", norm_name(schema)));
    }

    /// Whether an unqualified relation name read here refers to a CTE in scope.
    fn cte_visible(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| {
            let visible = if s.recursive { s.count } else { s.done };
            s.names.get(name).is_some_and(|&i| i < visible)
        })
    }

    /// A name read in a FROM/JOIN/USING position: an unqualified name that a visible CTE defines is not a table.
    fn read_table(&mut self, name: &ObjectName) {
        if let [ObjectNamePart::Identifier(i)] = name.0.as_slice()
            && self.cte_visible(&norm_ident(i))
        {
            return;
        }
        self.table(name);
    }

    pub(super) fn function(&mut self, name: &ObjectName) {
        self.info.functions.insert(norm_name(name));
    }

    pub(super) fn star(&mut self) {
        self.info.columns.insert("*".to_string());
    }

    pub(super) fn select_items(&mut self, items: &[SelectItem]) {
        if items.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        }) {
            self.star();
        }
    }

    /// `SELECT`/`VALUES`/`TABLE` bodies inside a set-operation tree, without recursing on the Rust stack.
    fn set_expr_tables(&mut self, body: &SetExpr) {
        let mut todo = vec![body];
        while let Some(e) = todo.pop() {
            match e {
                SetExpr::SetOperation { left, right, .. } => {
                    todo.push(left);
                    todo.push(right);
                }
                SetExpr::Table(t) => {
                    self.kind("select");
                    self.star();
                    if let Some(name) = &t.table_name {
                        let mut n = norm_ident(name);
                        if let Some(schema) = &t.schema_name {
                            n = format!("{}.{n}", norm_ident(schema));
                        }
                        if t.schema_name.is_none() && self.cte_visible(&n) {
                            continue;
                        }
                        self.table_str(n);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The plain expression of each argument (`None` for wildcards and other non-expression arguments).
fn function_args(f: &Function) -> Vec<Option<&Expr>> {
    match &f.args {
        FunctionArguments::List(list) => plain_args(&list.args),
        _ => Vec::new(),
    }
}

fn plain_args(args: &[FunctionArg]) -> Vec<Option<&Expr>> {
    function_arg_exprs(args)
        .map(|arg| match arg {
            FunctionArgExpr::Expr(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn function_arg_exprs(args: &[FunctionArg]) -> impl Iterator<Item = &FunctionArgExpr> {
    args.iter().map(|a| match a {
        FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg) => arg,
    })
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let mut names = HashMap::new();
        let (mut count, mut recursive) = (0, false);
        if let Some(w) = &q.with {
            recursive = w.recursive;
            count = w.cte_tables.len();
            for (i, c) in w.cte_tables.iter().enumerate() {
                let n = norm_ident(&c.alias.name);
                self.row_names.insert(n.clone());
                names.entry(n).or_insert(i);
            }
        }
        self.scopes.push(CteScope {
            names,
            count,
            recursive,
            done: 0,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // Now every CTE of this query is visible to its body.
        if let Some(own) = self.scopes.last_mut() {
            own.done = own.count;
        }
        self.set_expr_tables(&q.body);
        self.scopes.pop();
        // The queries visited directly under a WITH, before its main body, are its CTE bodies, in order.
        if let Some(parent) = self.scopes.last_mut()
            && parent.done < parent.count
        {
            parent.done += 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        self.kind("select");
        self.select_items(&s.projection);
        if let Some(into) = &s.into {
            self.kind("create");
            for t in &into.targets {
                match t {
                    Expr::Identifier(i) => self.table_str(norm_ident(i)),
                    Expr::CompoundIdentifier(parts) => {
                        self.table_str(parts.iter().map(norm_ident).collect::<Vec<_>>().join("."))
                    }
                    _ => {}
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if let Some(p) = self.table_factor_name.take()
            && std::ptr::eq(p, relation)
        {
            return ControlFlow::Continue(());
        }
        self.table(relation);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        let alias = match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if let Some(a) = args {
                    self.function(name);
                    if function_arg_exprs(&a.args)
                        .any(|x| matches!(x, FunctionArgExpr::QualifiedWildcard(_)))
                    {
                        self.whole_row();
                    }
                    self.special_function(name, plain_args(&a.args));
                } else {
                    self.read_table(name);
                }
                if let Some(last) = last_part(name) {
                    self.row_names.insert(last);
                }
                self.table_factor_name = Some(name as *const ObjectName);
                alias
            }
            TableFactor::Function {
                name, alias, args, ..
            } => {
                self.function(name);
                if function_arg_exprs(args)
                    .any(|x| matches!(x, FunctionArgExpr::QualifiedWildcard(_)))
                {
                    self.whole_row();
                }
                self.special_function(name, plain_args(args));
                alias
            }
            TableFactor::UNNEST { alias, .. } => {
                self.info.functions.insert("unnest".into());
                alias
            }
            TableFactor::JsonTable { alias, .. } => {
                self.info.functions.insert("json_table".into());
                alias
            }
            TableFactor::XmlTable { alias, .. } => {
                self.info.functions.insert("xmltable".into());
                alias
            }
            TableFactor::OpenJsonTable { alias, .. } => {
                self.info.functions.insert("openjson".into());
                alias
            }
            TableFactor::SemanticView { name, alias, .. } => {
                self.table(name);
                alias
            }
            TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::NestedJoin { alias, .. }
            | TableFactor::Pivot { alias, .. }
            | TableFactor::Unpivot { alias, .. }
            | TableFactor::MatchRecognize { alias, .. } => alias,
            TableFactor::UnpivotExpr { .. } => &None,
        };
        if let Some(a) = alias {
            self.row_names.insert(norm_ident(&a.name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        // Set by a CompoundFieldAccess for its root, which is the very next expression visited.
        let qualifier = self.qualifier.take();
        match e {
            Expr::Identifier(i) if qualifier.is_none_or(|q| !std::ptr::eq(q, e)) => {
                self.info.columns.insert(norm_ident(i));
            }
            Expr::CompoundFieldAccess { root, access_chain }
                if matches!(**root, Expr::Identifier(_))
                    && matches!(
                        access_chain.first(),
                        Some(sqlparser::ast::AccessExpr::Dot(_))
                    ) =>
            {
                self.qualifier = Some(&**root as *const Expr);
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    self.info.columns.insert(norm_ident(last));
                }
            }
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => self.whole_row(),
            Expr::Function(f) => {
                self.function(&f.name);
                if let FunctionArguments::List(list) = &f.args
                    && function_arg_exprs(&list.args).any(|x| {
                        matches!(
                            x,
                            FunctionArgExpr::QualifiedWildcard(_)
                                | FunctionArgExpr::WildcardWithOptions(_)
                        )
                    })
                {
                    self.whole_row();
                }
                self.special_function(&f.name, function_args(f));
            }
            Expr::Cast {
                expr, data_type, ..
            } => {
                let regclass = matches!(data_type, DataType::Regclass)
                    || data_type.to_string().eq_ignore_ascii_case("regclass");
                if regclass && let Some(s) = expr_string(expr) {
                    self.table_str(name_from_string(&s));
                }
            }
            Expr::Substring { .. } => {
                self.info.functions.insert("substring".into());
            }
            Expr::Trim { .. } => {
                self.info.functions.insert("trim".into());
            }
            Expr::Position { .. } => {
                self.info.functions.insert("position".into());
            }
            Expr::Overlay { .. } => {
                self.info.functions.insert("overlay".into());
            }
            Expr::Extract { .. } => {
                self.info.functions.insert("extract".into());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        self.statement(s);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if let Statement::Explain {
            analyze, options, ..
        } = s
            && !explain_executes(*analyze, options)
        {
            self.explain_only = self.explain_only.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }
}
