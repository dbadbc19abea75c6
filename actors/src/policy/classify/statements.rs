//! What each kind of statement adds to its `StatementInfo`: kinds, target tables, `EXPLAIN` and `EXECUTE` details.

use sqlparser::ast::{
    ColumnDef, ColumnOption, CommentObject, CopySource, CopyTarget, CreateTableLikeKind, Expr,
    GrantObjects, MergeAction, ObjectName, ObjectNamePart, ObjectType, OnConflictAction, OnInsert,
    Set, Statement, TableConstraint, TableFactor, TableObject, TableWithJoins, UtilityOption,
    Value,
};

use super::collector::Collector;
use super::names::{last_part, norm_ident, norm_name};

impl Collector {
    fn dml_target(&mut self, t: &TableWithJoins) {
        if let TableFactor::Table { name, .. } = &t.relation {
            self.table(name);
        }
        for j in &t.joins {
            if let TableFactor::Table { name, .. } = &j.relation {
                self.table(name);
            }
        }
    }

    fn foreign_keys_of_column(&mut self, c: &ColumnDef) {
        for o in &c.options {
            if let ColumnOption::ForeignKey(fk) = &o.option {
                self.table(&fk.foreign_table);
            }
        }
    }

    fn foreign_key_of_constraint(&mut self, c: &TableConstraint) {
        if let TableConstraint::ForeignKey(fk) = c {
            self.table(&fk.foreign_table);
        }
    }

    fn grant_objects(&mut self, objects: &Option<GrantObjects>) {
        match objects {
            Some(
                GrantObjects::Tables(names)
                | GrantObjects::Views(names)
                | GrantObjects::Sequences(names),
            ) => {
                for n in names {
                    self.table(n);
                }
            }
            Some(
                GrantObjects::AllTablesInSchema { schemas }
                | GrantObjects::AllSequencesInSchema { schemas }
                | GrantObjects::AllViewsInSchema { schemas }
                | GrantObjects::AllMaterializedViewsInSchema { schemas }
                | GrantObjects::AllExternalTablesInSchema { schemas }
                | GrantObjects::FutureTablesInSchema { schemas }
                | GrantObjects::FutureViewsInSchema { schemas }
                | GrantObjects::FutureExternalTablesInSchema { schemas }
                | GrantObjects::FutureMaterializedViewsInSchema { schemas }
                | GrantObjects::FutureSequencesInSchema { schemas }
                | GrantObjects::Schemas(schemas),
            ) => {
                for s in schemas {
                    self.schema_wide(s);
                }
            }
            _ => {}
        }
    }

    pub(super) fn statement(&mut self, s: &Statement) {
        match s {
            Statement::Query(_) => self.kind("select"),
            Statement::Insert(ins) => {
                self.kind("insert");
                if let TableObject::TableName(n) = &ins.table {
                    self.table(n);
                }
                match &ins.on {
                    Some(OnInsert::OnConflict(oc))
                        if matches!(oc.action, OnConflictAction::DoUpdate(_)) =>
                    {
                        self.kind("update")
                    }
                    Some(OnInsert::DuplicateKeyUpdate(_)) => self.kind("update"),
                    _ => {}
                }
                if let Some(r) = &ins.returning {
                    self.select_items(r);
                }
            }
            Statement::Update(u) => {
                self.kind("update");
                self.dml_target(&u.table);
                if u.selection.is_none() {
                    self.no_where();
                }
                if let Some(r) = &u.returning {
                    self.select_items(r);
                }
            }
            Statement::Delete(d) => {
                self.kind("delete");
                for n in &d.tables {
                    self.table(n);
                }
                let from = match &d.from {
                    sqlparser::ast::FromTable::WithFromKeyword(v)
                    | sqlparser::ast::FromTable::WithoutKeyword(v) => v,
                };
                for t in from {
                    self.dml_target(t);
                }
                if d.selection.is_none() {
                    self.no_where();
                }
                if let Some(r) = &d.returning {
                    self.select_items(r);
                }
            }
            Statement::Merge(m) => {
                self.kind("merge");
                if let TableFactor::Table { name, .. } = &m.table {
                    self.table(name);
                }
                match &m.output {
                    Some(
                        sqlparser::ast::OutputClause::Returning { select_items, .. }
                        | sqlparser::ast::OutputClause::Output { select_items, .. },
                    ) => self.select_items(select_items),
                    None => {}
                }
                for clause in &m.clauses {
                    match &clause.action {
                        MergeAction::Insert(_) => self.kind("insert"),
                        MergeAction::Update(_) => self.kind("update"),
                        MergeAction::Delete { .. } => self.kind("delete"),
                        MergeAction::DoNothing { .. } => {}
                    }
                }
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                self.kind("copy");
                match source {
                    CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        self.table(table_name);
                        self.kind(if *to { "select" } else { "insert" });
                        if columns.is_empty() {
                            self.star();
                        }
                        for c in columns {
                            self.info.columns.insert(norm_ident(c));
                        }
                    }
                    CopySource::Query(_) => self.kind("select"),
                }
                match target {
                    CopyTarget::Program { .. } => self.kind("copy_program"),
                    CopyTarget::File { .. } => {
                        self.info.functions.insert("pg_server_file".to_string());
                    }
                    CopyTarget::Stdin | CopyTarget::Stdout => {}
                }
            }
            Statement::CopyIntoSnowflake { .. } => {
                self.kind("copy");
                self.kind("other");
            }
            Statement::CreateTable(ct) => {
                self.kind("create");
                match &ct.like {
                    Some(CreateTableLikeKind::Parenthesized(l) | CreateTableLikeKind::Plain(l)) => {
                        self.table(&l.name)
                    }
                    None => {}
                }
                if let Some(c) = &ct.clone {
                    self.table(c);
                }
                for i in ct.inherits.iter().flatten() {
                    self.table(i);
                }
                for c in &ct.columns {
                    self.foreign_keys_of_column(c);
                }
                for c in &ct.constraints {
                    self.foreign_key_of_constraint(c);
                }
            }
            Statement::CreateFunction(cf) => {
                self.kind("create");
                self.kind("create_function");
                self.create_function_body(cf);
            }
            Statement::CreateProcedure { .. } | Statement::CreateMacro { .. } => {
                self.kind("create");
                self.kind("create_function");
            }
            Statement::CreateRole(_) | Statement::CreateUser(_) => {
                self.kind("create");
                self.kind("create_role");
            }
            Statement::CreateExtension(_) => {
                self.kind("create");
                self.kind("create_extension");
            }
            Statement::CreateTrigger(t) => {
                self.kind("create");
                self.table(&t.table_name);
                if let Some(r) = &t.referenced_table_name {
                    self.table(r);
                }
                if let Some(b) = &t.exec_body {
                    self.function(&b.func_desc.name);
                }
            }
            Statement::CreateSequence { name, .. } => {
                self.kind("create");
                self.table(name);
            }
            Statement::CreateView(_)
            | Statement::CreateIndex(_)
            | Statement::CreateVirtualTable { .. }
            | Statement::CreateSecret { .. }
            | Statement::CreateServer(_)
            | Statement::CreateForeignTable(_)
            | Statement::CreateForeignDataWrapper(_)
            | Statement::CreateUserMapping(_)
            | Statement::CreatePolicy(_)
            | Statement::CreateRule(_)
            | Statement::CreateConnector(_)
            | Statement::CreateOperator(_)
            | Statement::CreateOperatorFamily(_)
            | Statement::CreateOperatorClass(_)
            | Statement::CreateTextSearch(_)
            | Statement::CreateAggregate(_)
            | Statement::CreateCollation(_)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateStage { .. }
            | Statement::CreateFileFormat { .. }
            | Statement::CreateWarehouse(_)
            | Statement::CreateDomain(_)
            | Statement::CreateType { .. } => self.kind("create"),
            Statement::AlterTable(at) => {
                self.kind("alter");
                for op in &at.operations {
                    match op {
                        sqlparser::ast::AlterTableOperation::RenameTable { table_name } => {
                            let new = match table_name {
                                sqlparser::ast::RenameTableNameKind::As(n)
                                | sqlparser::ast::RenameTableNameKind::To(n) => n,
                            };
                            self.table(new);
                            // `ALTER TABLE s.x RENAME TO y` creates s.y.
                            if new.0.len() == 1 && at.name.0.len() > 1 {
                                let mut parts: Vec<String> =
                                    norm_name(&at.name).split('.').map(str::to_string).collect();
                                parts.pop();
                                parts.push(norm_name(new));
                                self.table_str(parts.join("."));
                            }
                        }
                        sqlparser::ast::AlterTableOperation::AddConstraint {
                            constraint, ..
                        } => self.foreign_key_of_constraint(constraint),
                        sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } => {
                            self.foreign_keys_of_column(column_def)
                        }
                        _ => {}
                    }
                }
            }
            Statement::AlterIndex { name, .. } => {
                self.kind("alter");
                self.table(name);
            }
            Statement::AlterRole { .. } | Statement::AlterUser(_) => {
                self.kind("alter");
                self.kind("alter_role");
            }
            Statement::AlterDefaultPrivileges(a) => {
                self.kind("alter");
                match &a.operation {
                    sqlparser::ast::AlterDefaultPrivilegesOperation::Grant { .. } => {
                        self.kind("grant")
                    }
                    sqlparser::ast::AlterDefaultPrivilegesOperation::Revoke { .. } => {
                        self.kind("revoke")
                    }
                }
            }
            Statement::AlterSchema(a) => {
                self.kind("alter");
                self.schema_wide(&a.name);
            }
            Statement::AlterView(a) => {
                self.kind("alter");
                if let sqlparser::ast::AlterViewOperation::RenameTo { new_name } = &a.operation {
                    self.table(new_name);
                }
            }
            Statement::AlterFunction(_)
            | Statement::AlterType(_)
            | Statement::AlterCollation(_)
            | Statement::AlterOperator(_)
            | Statement::AlterOperatorFamily(_)
            | Statement::AlterOperatorClass(_)
            | Statement::AlterTextSearch(_)
            | Statement::AlterPolicy(_)
            | Statement::AlterTrigger(_)
            | Statement::AlterConnector { .. }
            | Statement::AlterSession { .. } => self.kind("alter"),
            Statement::RenameTable(renames) => {
                self.kind("alter");
                self.kind("rename");
                for r in renames {
                    self.table(&r.old_name);
                    self.table(&r.new_name);
                }
            }
            Statement::Drop {
                object_type,
                names,
                table,
                ..
            } => {
                self.kind("drop");
                match object_type {
                    ObjectType::Role | ObjectType::User | ObjectType::Group => {
                        self.kind("drop_role")
                    }
                    ObjectType::Table
                    | ObjectType::ForeignTable
                    | ObjectType::View
                    | ObjectType::MaterializedView
                    | ObjectType::Index
                    | ObjectType::Sequence
                    | ObjectType::Stream => {
                        for n in names {
                            self.table(n);
                        }
                    }
                    ObjectType::Schema => {
                        for n in names {
                            self.schema_wide(n);
                        }
                    }
                    _ => {}
                }
                if let Some(t) = table {
                    self.table(t);
                }
            }
            Statement::DropTrigger(t) => {
                self.kind("drop");
                if let Some(n) = &t.table_name {
                    self.table(n);
                }
            }
            Statement::DropFunction(_)
            | Statement::DropDomain(_)
            | Statement::DropProcedure { .. }
            | Statement::DropSecret { .. }
            | Statement::DropPolicy(_)
            | Statement::DropRule(_)
            | Statement::DropConnector { .. }
            | Statement::DropExtension(_)
            | Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_) => self.kind("drop"),
            Statement::Truncate(_) => self.kind("truncate"),
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => {
                self.kind("comment");
                match object_type {
                    CommentObject::Table
                    | CommentObject::View
                    | CommentObject::MaterializedView
                    | CommentObject::ForeignTable
                    | CommentObject::Sequence => self.table(object_name),
                    CommentObject::Column if object_name.0.len() > 1 => {
                        let parent = ObjectName(object_name.0[..object_name.0.len() - 1].to_vec());
                        self.table(&parent);
                    }
                    _ => {}
                }
            }
            Statement::Grant(g) => {
                self.kind("grant");
                self.grant_objects(&g.objects);
            }
            Statement::GrantRole(_) => self.kind("grant"),
            Statement::Revoke(r) => {
                self.kind("revoke");
                self.grant_objects(&r.objects);
            }
            Statement::RevokeRole(_) => self.kind("revoke"),
            Statement::Call(f) => {
                self.kind("call");
                self.function(&f.name);
            }
            Statement::Set(set) => {
                self.kind("set");
                if matches!(set, Set::SetTransaction { .. }) {
                    self.kind("transaction");
                }
                let touches_lexing = |n: &ObjectName| {
                    last_part(n)
                        .is_some_and(|p| p.eq_ignore_ascii_case("standard_conforming_strings"))
                };
                let lexing = match set {
                    Set::SingleAssignment { variable, .. } => touches_lexing(variable),
                    Set::ParenthesizedAssignments { variables, .. } => {
                        variables.iter().any(touches_lexing)
                    }
                    Set::MultipleAssignments { assignments } => {
                        assignments.iter().any(|a| touches_lexing(&a.name))
                    }
                    _ => false,
                };
                if lexing {
                    self.info.set_opaque(
                        "SET standard_conforming_strings changes how later SQL is lexed",
                    );
                }
            }
            Statement::Reset(_) => self.kind("set"),
            Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowProcessList { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowCharset(_)
            | Statement::ShowObjects(_)
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowCollation { .. } => self.kind("show"),
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. } => self.kind("transaction"),
            Statement::Prepare { .. } => self.kind("prepare"),
            Statement::Execute { .. } => {
                self.kind("execute");
                if prepared_statement_name(s).is_none() {
                    self.info.set_opaque(
                        "EXECUTE of something other than a prepared statement name and parameters",
                    );
                }
            }
            Statement::Deallocate { .. } => self.kind("deallocate"),
            Statement::Explain {
                analyze, options, ..
            } => {
                self.kind("explain");
                if !explain_executes(*analyze, options) {
                    self.explain_only += 1;
                }
            }
            Statement::ExplainTable { table_name, .. } => {
                self.kind("explain");
                self.table(table_name);
            }
            Statement::Analyze(_) => self.kind("analyze"),
            Statement::Vacuum(v) => {
                self.kind("vacuum");
                if let Some(t) = &v.table_name {
                    self.table(t);
                }
            }
            Statement::Lock(_) | Statement::LockTables { .. } => self.kind("lock"),
            Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => self.kind("listen"),
            Statement::NOTIFY { .. } => self.kind("notify"),
            Statement::Discard { .. } => self.kind("discard"),
            Statement::Load { .. } | Statement::LoadData { .. } | Statement::Install { .. } => {
                self.kind("other");
                self.info.set_opaque("LOAD runs code from a shared library");
            }
            _ => self.kind("other"),
        }
    }
}

/// The name of `EXECUTE name [(params)]` in PostgreSQL's form; `None` for the other dialects' forms
/// (`EXECUTE 'sql'`, `EXECUTE IMMEDIATE`, `USING`, `INTO`, ...), which PostgreSQL would reject or which cannot be read.
pub(super) fn prepared_statement_name(s: &Statement) -> Option<String> {
    let Statement::Execute {
        name,
        parameters,
        has_parentheses,
        immediate,
        into,
        using,
        output,
        default,
    } = s
    else {
        return None;
    };
    if *immediate || !into.is_empty() || !using.is_empty() || *output || *default {
        return None;
    }
    if !*has_parentheses && !parameters.is_empty() {
        return None;
    }
    match name.as_ref().map(|n| n.0.as_slice()) {
        Some([ObjectNamePart::Identifier(i)]) if i.quote_style.is_none_or(|q| q == '"') => {
            Some(norm_ident(i))
        }
        _ => None,
    }
}

/// Whether an EXPLAIN runs its statement: `ANALYZE` given and not clearly switched off.
pub(super) fn explain_executes(analyze: bool, options: &Option<Vec<UtilityOption>>) -> bool {
    analyze
        || options
            .iter()
            .flatten()
            .any(|o| norm_ident(&o.name) == "analyze" && !is_false_option(o.arg.as_ref()))
}

/// PostgreSQL boolean option values that mean false; anything else (including invalid values) counts as true.
fn is_false_option(arg: Option<&Expr>) -> bool {
    let word = match arg {
        None => return false,
        Some(Expr::Value(v)) => match &v.value {
            Value::Boolean(b) => return !*b,
            Value::Number(n, _) => n.to_string(),
            Value::SingleQuotedString(s) => s.clone(),
            _ => return false,
        },
        Some(Expr::Identifier(i)) => i.value.clone(),
        _ => return false,
    };
    let w = word.to_ascii_lowercase();
    !w.is_empty()
        && ("false".starts_with(&w) || "no".starts_with(&w) || w == "off" || w == "of" || w == "0")
}
