//! Per-session policy state: what each prepared statement does, which
//! portal runs which statement, and the one-shot approvals granted.
//!
//! PostgreSQL lets a statement be prepared in one message and run in
//! another (`PREPARE p AS ...` then `EXECUTE p`; Parse then Bind/Execute;
//! SQL-level names are visible to protocol Binds). The tracker judges a
//! statement when its text arrives and remembers the verdict under its
//! name, so running it later is judged by what it does, not by the word
//! `EXECUTE`. A name the tracker does not know cannot be shown to be
//! harmless and is refused under an enforcing policy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::classify::{StatementInfo, classify};
use super::{SqlPolicy, Verdict};

/// Longest statement text kept per prepared name (for approval requests).
const MAX_KEPT_SQL: usize = 16 << 10;

/// Prepared statements a session may hold before the tracker stops
/// remembering new ones (and refuses to run them): bounds memory per session.
const MAX_STATEMENTS: usize = 10_000;

/// Largest SQL text classified. The parser's tree takes several hundred
/// times the text's size, so one huge statement could exhaust the
/// appliance's memory; bigger statements are unreadable (blocked under an
/// enforcing policy). 128 KiB is far above hand-written and ORM SQL.
pub const MAX_CLASSIFIED_SQL: usize = 128 << 10;

/// Classify, refusing text too large to analyse safely.
fn classify_bounded(sql: &str) -> Result<Vec<StatementInfo>, super::Unparsed> {
    if sql.len() > MAX_CLASSIFIED_SQL {
        return Err(super::Unparsed(format!(
            "statement of {} bytes is over the {} bytes the gateway analyses",
            sql.len(),
            MAX_CLASSIFIED_SQL
        )));
    }
    classify(sql)
}

/// What the relay does with one client message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Forward,
    /// Answer with an error instead; the target never sees the statement.
    Refuse {
        rule: String,
        message: String,
    },
    /// Ask an operator first.
    Hold {
        rule: String,
        timeout: Duration,
        approvers: Vec<String>,
        sql: String,
    },
}

/// Columns the statement refers to, for masking computed result columns.
pub type Mentioned = BTreeSet<String>;

#[derive(Debug, Clone)]
struct Prepared {
    info: StatementInfo,
    sql: String,
    verdict: Verdict,
    /// Approved executions not yet used.
    credits: u32,
    /// The unnamed statement whose Parse was refused: the target dropped
    /// its unnamed statement and has none, so an Execute is answered by
    /// the target's own error (or skipped after the Parse's error).
    refused: bool,
}

pub struct PolicyTracker {
    policy: Arc<SqlPolicy>,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, String>,
    /// Classify even when nothing is enforced: column masks need to know
    /// which columns a statement mentions.
    needs_columns: bool,
    /// Set when the session's settings make the target read SQL text
    /// differently from the classifier (see [`lexing_hazard`]).
    lexing_hazard: Option<String>,
}

/// Settings under which the target lexes SQL differently from the
/// classifier: backslashes in ordinary strings (`standard_conforming_strings
/// = off`) or a client encoding whose multibyte characters can contain
/// quote or backslash bytes. Statements are then unreadable.
pub fn lexing_hazard(name: &str, value: &str) -> Option<String> {
    match name {
        "standard_conforming_strings" if !value.eq_ignore_ascii_case("on") => {
            Some("standard_conforming_strings is off".into())
        }
        "client_encoding"
            if !["UTF8", "UTF-8", "SQL_ASCII"]
                .iter()
                .any(|e| value.eq_ignore_ascii_case(e)) =>
        {
            Some(format!("client_encoding {value} is not UTF8"))
        }
        _ => None,
    }
}

fn refuse(rule: &str, message: impl Into<String>) -> Decision {
    Decision::Refuse {
        rule: rule.into(),
        message: message.into(),
    }
}

fn kept(sql: &str) -> String {
    crate::pg::tap::capped(sql, MAX_KEPT_SQL)
}

impl PolicyTracker {
    pub fn new(policy: Arc<SqlPolicy>) -> Self {
        let needs_columns = policy.masker.as_ref().is_some_and(|m| m.has_column_rules());
        PolicyTracker {
            policy,
            statements: HashMap::new(),
            portals: HashMap::new(),
            needs_columns,
            lexing_hazard: None,
        }
    }

    /// The target reported a setting (ParameterStatus).
    pub fn setting(&mut self, name: &str, value: &str) {
        match lexing_hazard(name, value) {
            Some(why) => self.lexing_hazard = Some(why),
            // Back to a safe value, unless the other setting is unsafe.
            None if self
                .lexing_hazard
                .as_deref()
                .is_some_and(|h| h.starts_with(name)) =>
            {
                self.lexing_hazard = None;
            }
            None => {}
        }
    }

    /// Classify `sql` as the target would read it.
    fn read(&self, sql: &str) -> Result<Vec<StatementInfo>, super::Unparsed> {
        match &self.lexing_hazard {
            Some(why) => Err(super::Unparsed(why.clone())),
            None => classify_bounded(sql),
        }
    }

    pub fn policy(&self) -> &SqlPolicy {
        &self.policy
    }

    fn watching(&self) -> bool {
        self.policy.enforcing() || self.needs_columns
    }

    /// Everything a column rule could be hiding: used when a statement
    /// cannot be read, so computed columns are masked.
    fn all_mentioned(&self) -> Mentioned {
        std::iter::once(super::classify::ANY_COLUMN.to_owned()).collect()
    }

    fn verdict_to_decision(&self, verdict: Verdict, sql: &str) -> Decision {
        match verdict {
            Verdict::Allow => Decision::Forward,
            Verdict::Block { rule, message } => Decision::Refuse { rule, message },
            Verdict::Approve {
                rule,
                timeout,
                approvers,
            } => Decision::Hold {
                rule,
                timeout,
                approvers,
                sql: kept(sql),
            },
        }
    }

    /// The info and verdict of one statement, with `EXECUTE name` replaced
    /// by what `name` does.
    fn resolve(&self, info: StatementInfo) -> Result<(StatementInfo, Verdict), Decision> {
        if let Some(name) = &info.executes {
            return match self.statements.get(name) {
                Some(p) => Ok((p.info.clone(), p.verdict.clone())),
                None if self.policy.enforcing() => Err(refuse(
                    "unknown-statement",
                    format!("prepared statement {name:?} was not seen by the gateway"),
                )),
                None => Ok((info, Verdict::Allow)),
            };
        }
        let verdict = self.policy.judge(&info);
        Ok((info, verdict))
    }

    /// Remember a prepared statement. A name seen before keeps the stricter
    /// verdict and the union of both: if the target refused the second
    /// PREPARE (the name exists), it still runs the first.
    fn remember(&mut self, name: String, info: StatementInfo, sql: &str, verdict: Verdict) {
        if self.statements.len() >= MAX_STATEMENTS && !self.statements.contains_key(&name) {
            return;
        }
        let unnamed = name.is_empty();
        match self.statements.get_mut(&name) {
            Some(old) if !unnamed => {
                old.verdict = old.verdict.clone().and(verdict);
                old.sql = kept(&format!("{}\n-- or, if the target kept it: {sql}", old.sql));
                old.info.kinds.extend(info.kinds);
                old.info.tables.extend(info.tables);
                old.info.functions.extend(info.functions);
                old.info.columns.extend(info.columns);
                old.info.without_where |= info.without_where;
            }
            _ => {
                self.statements.insert(
                    name,
                    Prepared {
                        info,
                        sql: kept(sql),
                        verdict,
                        credits: 0,
                        refused: false,
                    },
                );
            }
        }
    }

    /// A simple-protocol Query (one or more statements).
    pub fn query(&mut self, sql: &str) -> (Decision, Option<Mentioned>) {
        if !self.watching() {
            return (Decision::Forward, None);
        }
        let infos = match self.read(sql) {
            Ok(infos) => infos,
            Err(e) => {
                let verdict = self.policy.unreadable(&e.0);
                return (
                    self.verdict_to_decision(verdict, sql),
                    Some(self.all_mentioned()),
                );
            }
        };
        // Statements of one message run in order: `DEALLOCATE x; PREPARE x
        // AS ...; EXECUTE x` executes the new x. They are judged in order
        // against a copy of the prepared statements, kept only if the
        // message is not refused (then none of it runs).
        let touches_names = infos
            .iter()
            .any(|i| i.prepares.is_some() || i.executes.is_some() || i.deallocates.is_some());
        let saved = touches_names.then(|| self.statements.clone());
        let mut verdict = Verdict::Allow;
        let mut mentioned = Mentioned::new();
        // What each EXECUTE runs, for the operator asked to approve it.
        let mut executed = String::new();
        for info in infos {
            let prepares_name = info.prepares.clone();
            let deallocates_name = info.deallocates.clone();
            if let Some(name) = &info.executes
                && let Some(p) = self.statements.get(name)
            {
                executed.push_str(&format!("\n-- EXECUTE {name} runs: {}", p.sql));
            }
            let (info, v) = match self.resolve(info) {
                Ok(r) => r,
                Err(d) => {
                    if let Some(saved) = saved {
                        self.statements = saved;
                    }
                    return (d, Some(mentioned));
                }
            };
            mentioned.extend(info.columns.iter().cloned());
            match prepares_name {
                // Preparing runs nothing: a statement that needs approval
                // is held when it is executed, each time.
                Some(name) => {
                    if let Verdict::Block { .. } = v {
                        verdict = verdict.and(v.clone());
                    }
                    self.remember(name, info, sql, v);
                }
                None => verdict = verdict.and(v),
            }
            match deallocates_name {
                Some(Some(name)) => {
                    self.statements.remove(&name);
                }
                Some(None) => self.statements.retain(|name, _| name.is_empty()),
                None => {}
            }
        }
        if matches!(verdict, Verdict::Block { .. })
            && let Some(saved) = saved
        {
            self.statements = saved;
        }
        let shown = if executed.is_empty() {
            sql.to_owned()
        } else {
            format!("{sql}{executed}")
        };
        (self.verdict_to_decision(verdict, &shown), Some(mentioned))
    }

    /// Parse: judge now; a blocked statement never reaches the target.
    pub fn parse(&mut self, name: &str, sql: &str) -> (Decision, Option<Mentioned>) {
        if !self.watching() {
            return (Decision::Forward, None);
        }
        let infos = match self.read(sql) {
            Ok(infos) => infos,
            Err(e) => {
                let verdict = self.policy.unreadable(&e.0);
                let mut info = StatementInfo::default();
                info.columns.insert(super::classify::ANY_COLUMN.into());
                if matches!(verdict, Verdict::Block { .. }) {
                    self.refused_parse(name);
                } else {
                    self.remember(name.to_owned(), info, sql, verdict.clone());
                }
                return (
                    self.verdict_to_decision(verdict, sql),
                    Some(self.all_mentioned()),
                );
            }
        };
        let mut verdict = Verdict::Allow;
        let mut merged = StatementInfo::default();
        for info in infos {
            let (info, v) = match self.resolve(info) {
                Ok(r) => r,
                Err(d) => return (d, None),
            };
            verdict = verdict.and(v);
            merged.kinds.extend(info.kinds);
            merged.tables.extend(info.tables);
            merged.functions.extend(info.functions);
            merged.columns.extend(info.columns);
            merged.without_where |= info.without_where;
        }
        let mentioned = merged.columns.clone();
        if matches!(verdict, Verdict::Block { .. }) {
            self.refused_parse(name);
        } else {
            self.remember(name.to_owned(), merged, sql, verdict.clone());
        }
        (self.verdict_to_decision(verdict, sql), Some(mentioned))
    }

    /// The Parse of `name` was refused (blocked, denied, timed out). Its
    /// stand-in is sent under the same name, so for the unnamed statement
    /// the target drops the previous one, as PostgreSQL does for any failed
    /// Parse, and a new name is not created; a named statement that existed
    /// keeps whatever it had (and its verdict).
    pub fn refused_parse(&mut self, name: &str) {
        if name.is_empty() || !self.statements.contains_key(name) {
            self.statements.insert(
                name.to_owned(),
                Prepared {
                    info: StatementInfo::default(),
                    sql: String::new(),
                    verdict: Verdict::Allow,
                    credits: 0,
                    refused: true,
                },
            );
        }
    }

    /// An operator approved the Parse of `name`: one execution may run.
    pub fn grant(&mut self, name: &str) {
        if let Some(p) = self.statements.get_mut(name) {
            p.credits += 1;
        }
    }

    pub fn bind(&mut self, portal: &str, statement: &str) {
        if self.watching() {
            if self.portals.len() >= MAX_STATEMENTS && !self.portals.contains_key(portal) {
                return;
            }
            self.portals.insert(portal.to_owned(), statement.to_owned());
        }
    }

    /// Execute of a portal: statements that need approval are held at
    /// every execution unless their Parse was just approved.
    pub fn execute(&mut self, portal: &str) -> (Decision, Option<Mentioned>) {
        if !self.watching() {
            return (Decision::Forward, None);
        }
        // A portal the gateway did not bind is a SQL cursor (DECLARE), judged
        // when it was declared.
        let Some(statement) = self.portals.get(portal) else {
            return (Decision::Forward, Some(self.all_mentioned()));
        };
        let enforcing = self.policy.enforcing();
        let Some(p) = self.statements.get_mut(statement) else {
            return if enforcing {
                (
                    refuse(
                        "unknown-statement",
                        format!("prepared statement {statement:?} was not seen by the gateway"),
                    ),
                    None,
                )
            } else {
                (Decision::Forward, None)
            };
        };
        if p.refused {
            return (Decision::Forward, None);
        }
        let mentioned = Some(p.info.columns.clone());
        match &p.verdict {
            Verdict::Approve {
                rule,
                timeout,
                approvers,
            } => {
                if p.credits > 0 {
                    p.credits -= 1;
                    (Decision::Forward, mentioned)
                } else {
                    (
                        Decision::Hold {
                            rule: rule.clone(),
                            timeout: *timeout,
                            approvers: approvers.clone(),
                            sql: p.sql.clone(),
                        },
                        mentioned,
                    )
                }
            }
            // A blocked statement is never remembered; Allow runs.
            _ => (Decision::Forward, mentioned),
        }
    }

    /// Close of a statement (`S`) or portal (`P`).
    pub fn close(&mut self, what: u8, name: &str) {
        match what {
            b'S' => {
                self.statements.remove(name);
            }
            b'P' => {
                self.portals.remove(name);
            }
            _ => {}
        }
    }

    /// Fast-path FunctionCall names a function by OID only, which cannot be
    /// checked against function rules: refused under an enforcing policy.
    pub fn function_call(&self) -> Decision {
        if self.policy.enforcing() {
            refuse(
                "function-call",
                "fast-path function calls cannot be checked against policy",
            )
        } else {
            Decision::Forward
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, NamePattern, Rule, Unreadable};

    fn rule(action: Action, statements: &[&str]) -> Rule {
        Rule {
            name: statements.join("+"),
            action,
            statements: statements.iter().map(|s| s.to_string()).collect(),
            tables: vec![],
            functions: vec![],
            without_where: false,
        }
    }

    fn approve() -> Action {
        Action::Approve {
            timeout: Duration::from_secs(60),
            approvers: vec![],
        }
    }

    fn tracker(rules: Vec<Rule>) -> PolicyTracker {
        PolicyTracker::new(Arc::new(SqlPolicy {
            name: "p".into(),
            rules,
            default_block: false,
            unparsed: Unreadable::Block,
            masker: None,
        }))
    }

    fn is_refused(d: &Decision) -> bool {
        matches!(d, Decision::Refuse { .. })
    }

    fn is_held(d: &Decision) -> bool {
        matches!(d, Decision::Hold { .. })
    }

    #[test]
    fn prepare_is_judged_by_what_it_prepares() {
        let mut t = tracker(vec![rule(Action::Block { message: None }, &["delete"])]);
        assert!(is_refused(&t.query("PREPARE p AS DELETE FROM t").0));
        // Never prepared (the PREPARE did not run): unknown, refused.
        assert!(is_refused(&t.query("EXECUTE p").0));
        assert_eq!(t.query("PREPARE q AS SELECT 1").0, Decision::Forward);
        assert_eq!(t.query("EXECUTE q").0, Decision::Forward);
        assert_eq!(t.query("DEALLOCATE q").0, Decision::Forward);
        assert!(is_refused(&t.query("EXECUTE q").0), "deallocated");
    }

    #[test]
    fn approval_is_asked_at_each_execution() {
        let mut t = tracker(vec![rule(approve(), &["delete"])]);
        assert_eq!(t.query("PREPARE p AS DELETE FROM t").0, Decision::Forward);
        assert!(is_held(&t.query("EXECUTE p").0));
        assert!(is_held(&t.query("EXECUTE p").0));
        // Extended protocol: held at Parse; the approval covers one Execute.
        assert!(is_held(&t.parse("s", "DELETE FROM t WHERE id = $1").0));
        t.grant("s");
        t.bind("", "s");
        assert_eq!(t.execute("").0, Decision::Forward);
        assert!(is_held(&t.execute("").0), "single use");
    }

    #[test]
    fn a_reused_statement_name_keeps_the_stricter_verdict() {
        let mut t = tracker(vec![rule(approve(), &["delete"])]);
        assert!(is_held(&t.parse("s", "DELETE FROM t").0));
        // The target refuses a second Parse of an existing name and keeps
        // the DELETE: the tracker must not believe the harmless one.
        assert_eq!(t.parse("s", "SELECT 1").0, Decision::Forward);
        t.bind("p", "s");
        assert!(is_held(&t.execute("p").0));
    }

    #[test]
    fn executing_a_refused_parse_is_left_to_the_target() {
        // The refused Parse's error makes the target skip to Sync; the
        // Execute behind it is not a second refusal.
        let mut t = tracker(vec![rule(Action::Block { message: None }, &["delete"])]);
        assert!(is_refused(&t.parse("s2", "DELETE FROM t").0));
        t.bind("", "s2");
        assert_eq!(t.execute("").0, Decision::Forward);
        assert!(is_refused(&t.parse("", "DELETE FROM t").0));
        t.bind("", "");
        assert_eq!(t.execute("").0, Decision::Forward);
    }

    #[test]
    fn unknown_statements_and_fast_path_calls_are_refused() {
        let mut t = tracker(vec![rule(Action::Block { message: None }, &["drop"])]);
        t.bind("", "never-parsed");
        assert!(is_refused(&t.execute("").0));
        assert!(is_refused(&t.function_call()));
        // A portal the gateway did not bind is a SQL cursor: forwarded.
        assert_eq!(t.execute("cursor_1").0, Decision::Forward);
    }

    #[test]
    fn one_blocked_statement_refuses_the_message() {
        let mut t = tracker(vec![rule(Action::Block { message: None }, &["drop"])]);
        assert!(is_refused(&t.query("SELECT 1; DROP TABLE x").0));
        assert!(is_refused(&t.query("SELEC 1").0), "unparsed");
        let mut open = tracker(vec![]);
        assert_eq!(open.query("SELEC 1").0, Decision::Forward);
    }

    #[test]
    fn unsafe_lexing_settings_make_sql_unreadable() {
        let mut t = tracker(vec![rule(Action::Block { message: None }, &["drop"])]);
        assert_eq!(t.query("SELECT 'a\\'").0, Decision::Forward);
        t.setting("standard_conforming_strings", "off");
        assert!(is_refused(&t.query("SELECT 1").0));
        t.setting("standard_conforming_strings", "on");
        assert_eq!(t.query("SELECT 1").0, Decision::Forward);
        t.setting("client_encoding", "SJIS");
        assert!(is_refused(&t.query("SELECT 1").0));
        t.setting("client_encoding", "UTF8");
        assert_eq!(t.query("SELECT 1").0, Decision::Forward);
    }

    #[test]
    fn table_rules_see_through_ctes() {
        let mut t = tracker(vec![Rule {
            name: "customers".into(),
            action: Action::Block { message: None },
            statements: vec!["delete".into()],
            tables: vec![NamePattern::parse("public.customers").unwrap()],
            functions: vec![],
            without_where: false,
        }]);
        assert!(is_refused(
            &t.query("WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d")
                .0
        ));
        assert_eq!(t.query("DELETE FROM orders").0, Decision::Forward);
    }
}
