//! Where a parsed statement's values go: the columns an INSERT, UPDATE or
//! MERGE writes them to, the columns they are compared with, and the
//! prepared statements `PREPARE`, `EXECUTE` and `DEALLOCATE` name.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, Expr, Ident, InTarget, MergeAction, MergeInsertKind, MergeUpdateKind,
    ObjectName, OnConflictAction, OnInsert, SelectItem, SetExpr, Statement, TableFactor,
    TableObject, Value, Values, Visit, visit_expressions, visit_statements,
};
use sqlparser::tokenizer::Location;

/// A column as a statement names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Written {
    /// `schema.table` or `table` of an INSERT or UPDATE target; `None` for
    /// a column compared somewhere (its qualifier may be an alias).
    pub(super) table: Option<String>,
    pub(super) column: String,
}

/// Where a value sits in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// A literal starting at this line and column.
    Literal(Location),
    /// `$n`.
    Param(u32),
}

/// Where a value goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum To {
    Column(Written),
    /// Argument `index` (from 0) of `EXECUTE statement(…)`: the column of
    /// that prepared statement's `$index+1`, as remembered by the session
    /// (`None`: a name that cannot be a prepared statement's).
    Param {
        statement: Option<String>,
        index: usize,
    },
}

/// Values of one statement paired with where they go, and the names the
/// statement prepares (`PREPARE name AS …`).
#[derive(Default)]
pub(super) struct Sites {
    pub(super) values: Vec<(Place, To)>,
    /// Names prepared (`None`: one the gateway cannot follow, see
    /// [`folded`]).
    pub(super) prepares: Vec<Option<String>>,
    /// Names deallocated (`None`: `ALL`, or one it cannot follow).
    pub(super) deallocates: Vec<Option<String>>,
}

/// Where the values of one statement go (and of every statement inside
/// it: `PREPARE … AS`, `EXPLAIN ANALYZE`, data-modifying CTEs).
pub(super) fn sites(statement: &Statement) -> Sites {
    let mut sites = Sites::default();
    let _ = visit_statements(statement, |s| {
        written_by(s, &mut sites);
        ControlFlow::<()>::Continue(())
    });
    // Comparisons anywhere in the statement.
    let _ = visit_expressions(statement, |expr| {
        compared(expr, &mut sites);
        ControlFlow::<()>::Continue(())
    });
    sites
}

/// The values an INSERT or UPDATE writes, with their columns.
fn written_by(statement: &Statement, sites: &mut Sites) {
    let sites = &mut *sites;
    match statement {
        Statement::Insert(insert) => {
            let table = match &insert.table {
                TableObject::TableName(name) => Some(object_name(name)),
                _ => None,
            };
            let columns: Vec<String> = insert.columns.iter().map(last_part).collect();
            if let Some(source) = &insert.source {
                match source.body.as_ref() {
                    SetExpr::Values(values) => rows_written(values, &table, &columns, sites),
                    SetExpr::Select(select) => {
                        for (i, item) in select.projection.iter().enumerate() {
                            if let SelectItem::UnnamedExpr(e)
                            | SelectItem::ExprWithAlias { expr: e, .. } = item
                            {
                                values_in(e, &positional(&table, &columns, i), sites);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(OnInsert::OnConflict(conflict)) = &insert.on
                && let OnConflictAction::DoUpdate(update) = &conflict.action
            {
                for a in &update.assignments {
                    assigned(&a.target, &a.value, table.as_deref(), sites);
                }
            }
        }
        Statement::Update(update) => {
            let table = match &update.table.relation {
                TableFactor::Table { name, .. } => Some(object_name(name)),
                _ => None,
            };
            for a in &update.assignments {
                assigned(&a.target, &a.value, table.as_deref(), sites);
            }
        }
        Statement::Merge(merge) => {
            let table = match &merge.table {
                TableFactor::Table { name, .. } => Some(object_name(name)),
                _ => None,
            };
            for clause in &merge.clauses {
                match &clause.action {
                    MergeAction::Update(update) => {
                        if let MergeUpdateKind::Set(assignments) = &update.kind {
                            for a in assignments {
                                assigned(&a.target, &a.value, table.as_deref(), sites);
                            }
                        }
                    }
                    MergeAction::Insert(insert) => {
                        if let MergeInsertKind::Values(values) = &insert.kind {
                            let columns: Vec<String> =
                                insert.columns.iter().map(last_part).collect();
                            rows_written(values, &table, &columns, sites);
                        }
                    }
                    _ => {}
                }
            }
        }
        Statement::Prepare { name, .. } => sites.prepares.push(folded(name)),
        Statement::Deallocate { name, .. } => sites
            .deallocates
            .push(folded(name).filter(|n| !(name.quote_style.is_none() && n == "all"))),
        Statement::Execute {
            name: Some(name),
            parameters,
            ..
        } => {
            let statement = match &name.0[..] {
                [part] => part.as_ident().and_then(folded),
                _ => None,
            };
            for (index, expr) in parameters.iter().enumerate() {
                let to = To::Param {
                    statement: statement.clone(),
                    index,
                };
                values_in(expr, &to, sites);
            }
        }
        _ => {}
    }
}

/// Value `i` of an INSERT's row, written to `columns[i]` of `table`. No
/// column there (no list): the empty name asks for any rule of the table.
fn positional(table: &Option<String>, columns: &[String], i: usize) -> To {
    To::Column(Written {
        table: table.clone(),
        column: columns.get(i).cloned().unwrap_or_default(),
    })
}

/// Every value of `VALUES (…), (…)` inserted into `columns` of `table`.
fn rows_written(values: &Values, table: &Option<String>, columns: &[String], sites: &mut Sites) {
    for row in &values.rows {
        for (i, expr) in row.content.iter().enumerate() {
            values_in(expr, &positional(table, columns, i), sites);
        }
    }
}

/// A statement name as PostgreSQL keeps it, unquoted names folded to
/// lower case (ASCII only, as PostgreSQL does on a UTF-8 server); `None`
/// for a name it may keep differently: one of [`MAX_FOLLOWED_NAME`] bytes
/// or more (PostgreSQL cuts names to 63 bytes, so two long names can be
/// one statement) or with non-ASCII characters.
fn folded(name: &Ident) -> Option<String> {
    let value = match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_ascii_lowercase(),
    };
    followed_name(value.as_bytes()).then_some(value)
}

/// Statement names this long or longer are not followed (see [`folded`]).
pub const MAX_FOLLOWED_NAME: usize = 63;

/// Whether a statement name (SQL, folded, or a Parse's as sent) can be
/// matched to what PostgreSQL keeps under it.
pub fn followed_name(name: &[u8]) -> bool {
    name.len() < MAX_FOLLOWED_NAME && name.is_ascii()
}

/// `SET target = value`.
fn assigned(target: &AssignmentTarget, value: &Expr, table: Option<&str>, sites: &mut Sites) {
    let written = |name: &ObjectName| {
        To::Column(Written {
            table: table.map(str::to_owned),
            column: last_part(name),
        })
    };
    match target {
        AssignmentTarget::ColumnName(name) => values_in(value, &written(name), sites),
        AssignmentTarget::Tuple(names) => match value {
            Expr::Tuple(values) => {
                for (name, v) in names.iter().zip(values) {
                    values_in(v, &written(name), sites);
                }
            }
            // `SET (a, b) = (SELECT …)`: every value may go to any of them.
            other => {
                for name in names {
                    values_in(other, &written(name), sites);
                }
            }
        },
    }
}

/// A comparison between a column and values.
fn compared(expr: &Expr, sites: &mut Sites) {
    let pairs: Vec<(&Expr, Vec<&Expr>)> = match expr {
        Expr::BinaryOp { left, right, .. } => {
            vec![(left, vec![right.as_ref()]), (right, vec![left.as_ref()])]
        }
        Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
            vec![(left, vec![right.as_ref()])]
        }
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            vec![(a, vec![b.as_ref()]), (b, vec![a.as_ref()])]
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            ..
        } => vec![(expr, list.iter().collect())],
        Expr::Between {
            expr, low, high, ..
        } => vec![(expr, vec![low.as_ref(), high.as_ref()])],
        Expr::Like { expr, pattern, .. }
        | Expr::ILike { expr, pattern, .. }
        | Expr::SimilarTo { expr, pattern, .. } => vec![(expr, vec![pattern.as_ref()])],
        // `c IN (SELECT …)`: every value of the subquery may be compared.
        Expr::In {
            expr,
            target: InTarget::Subquery(query),
            ..
        } => {
            each_column(expr, |to| values_in(query.as_ref(), &to, sites));
            return;
        }
        _ => return,
    };
    for (side, others) in pairs {
        each_column(side, |to| {
            for other in &others {
                values_in(*other, &to, sites);
            }
        });
    }
}

/// Each column `side` reads, as where the values compared with it go.
fn each_column(side: &Expr, mut compared_with: impl FnMut(To)) {
    let mut columns = Vec::new();
    columns_in(side, &mut columns);
    for column in columns {
        compared_with(To::Column(Written {
            table: None,
            column,
        }));
    }
}

/// Column names an expression reads (through casts, parentheses,
/// operators and function calls).
fn columns_in(expr: &Expr, out: &mut Vec<String>) {
    let _ = visit_expressions(expr, |e| {
        match e {
            Expr::Identifier(ident) => out.push(ident.value.clone()),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    out.push(last.value.clone());
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Every literal and parameter inside `node` (function arguments, casts,
/// typed literals like `text '…'` and subqueries included), as written to
/// `to`.
fn values_in<V: Visit>(node: &V, to: &To, sites: &mut Sites) {
    let _ = visit_expressions(node, |e| {
        let v = match e {
            Expr::Value(v) => v,
            Expr::TypedString(typed) => &typed.value,
            _ => return ControlFlow::Continue(()),
        };
        let place = match &v.value {
            Value::Placeholder(p) => match p.strip_prefix('$').and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => Place::Param(n),
                _ => return ControlFlow::Continue(()),
            },
            Value::Null | Value::Boolean(_) => return ControlFlow::Continue(()),
            _ => Place::Literal(v.span.start),
        };
        sites.values.push((place, to.clone()));
        ControlFlow::<()>::Continue(())
    });
}

fn last_part(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .unwrap_or_default()
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(".")
}
