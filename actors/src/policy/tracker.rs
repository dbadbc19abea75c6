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

use super::classify::{StatementInfo, classify_shared};
use super::memo::Allowed;
use super::shape::Shared;
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
fn classify_bounded(sql: &str) -> Result<(Shared, bool), super::Unparsed> {
    if sql.len() > MAX_CLASSIFIED_SQL {
        return Err(super::Unparsed(format!(
            "statement of {} bytes is over the {} bytes the gateway analyses",
            sql.len(),
            MAX_CLASSIFIED_SQL
        )));
    }
    classify_shared(sql)
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

/// A bound portal: the verdict of its statement *when it was bound* (the
/// target binds then; a later Parse under the same name does not change
/// what the portal runs).
#[derive(Debug)]
struct Portal {
    statement: Option<Prepared>,
    statement_name: String,
    /// An approval (of its Parse, or of its first Execute) covers this
    /// portal's run, including continuations after PortalSuspended.
    approved: bool,
}

pub struct PolicyTracker {
    policy: Arc<SqlPolicy>,
    /// Prepared statements, never forgotten on DEALLOCATE or Close: the
    /// target may not have run those (an error earlier in the pipeline),
    /// and a forgotten name re-prepared harmlessly would hide what the
    /// target still holds. A reused name keeps the stricter verdict.
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    /// Replacements of the unnamed statement since the last Sync, with
    /// what it was before: if the target reports an error in that pipeline
    /// it may have skipped the Parse, so the old verdict is merged back.
    open_changes: Vec<Option<Prepared>>,
    /// The same, per pipeline (or Query) still waiting for ReadyForQuery.
    pending_changes: std::collections::VecDeque<Vec<Option<Prepared>>>,
    /// Classify even when nothing is enforced: column masks need to know
    /// which columns a statement mentions.
    needs_columns: bool,
    /// Settings under which the target reads SQL text differently from
    /// the classifier (see [`lexing_hazard`]), by setting name.
    hazards: std::collections::BTreeMap<String, String>,
    /// Classifications this session allowed, judged once.
    allowed: Allowed,
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

/// Everything either statement does (for a name that may hold either).
fn union(into: &mut StatementInfo, other: StatementInfo) {
    into.kinds.extend(other.kinds);
    into.tables.extend(other.tables);
    into.functions.extend(other.functions);
    into.columns.extend(other.columns);
    into.without_where |= other.without_where;
}

impl Prepared {
    /// The name may hold this statement or `other`: keep the stricter
    /// verdict, both statements' effects, and both texts for an approver.
    fn absorb(&mut self, other: StatementInfo, other_sql: &str, other_verdict: Verdict) {
        self.verdict = self.verdict.clone().and(other_verdict);
        union(&mut self.info, other);
        self.sql = kept(&format!("{}{OR_KEPT}{other_sql}", self.sql));
    }
}

fn too_many() -> Verdict {
    Verdict::Block {
        rule: "limits".into(),
        message: format!(
            "more than {MAX_STATEMENTS} prepared statements or portals in one session"
        ),
    }
}

/// How the tracker writes, for an approver, that a prepared name may hold
/// another statement, and what an `EXECUTE name` runs.
const OR_KEPT: &str = "\n-- or, if the target kept it: ";
const EXECUTE_RUNS: &str = "\n-- EXECUTE ";
const RUNS: &str = " runs: ";

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
            open_changes: Vec::new(),
            pending_changes: Default::default(),
            needs_columns,
            hazards: Default::default(),
            allowed: Allowed::default(),
        }
    }

    /// A Sync: the pipeline's changes wait for its ReadyForQuery.
    pub fn sync(&mut self) {
        let changes = std::mem::take(&mut self.open_changes);
        self.pending_changes.push_back(changes);
    }

    /// A Query or FunctionCall: answered by one ReadyForQuery of its own.
    pub fn own_unit(&mut self) {
        self.pending_changes.push_back(Vec::new());
    }

    /// The target's ReadyForQuery for the oldest pending pipeline, and
    /// whether it reported an error in it.
    pub fn unit_done(&mut self, errored: bool) {
        let Some(changes) = self.pending_changes.pop_front() else {
            return;
        };
        if !errored {
            return;
        }
        for old in changes.into_iter().rev().flatten() {
            self.merge_back(String::new(), old);
        }
    }

    /// The target may still hold `old` under `name`: keep the stricter.
    fn merge_back(&mut self, name: String, old: Prepared) {
        match self.statements.get_mut(&name) {
            Some(cur) => {
                if cur.refused {
                    *cur = old;
                    return;
                }
                if old.refused {
                    return;
                }
                cur.absorb(old.info, &old.sql, old.verdict);
            }
            None => {
                self.statements.insert(name, old);
            }
        }
    }

    /// The target reported a setting (ParameterStatus).
    pub fn setting(&mut self, name: &str, value: &str) {
        match lexing_hazard(name, value) {
            Some(why) => {
                self.hazards.insert(name.to_owned(), why);
            }
            None => {
                self.hazards.remove(name);
            }
        }
    }

    /// Classify `sql` as the target would read it.
    fn read(&mut self, sql: &str) -> Result<Vec<StatementInfo>, super::Unparsed> {
        self.read_shared(sql)
            .map(|(infos, _)| std::rc::Rc::unwrap_or_clone(infos))
    }

    /// [`Self::read`], as the shape cache shares it (and whether the cache
    /// keeps it, see [`super::shape::classify_shared`]).
    fn read_shared(&mut self, sql: &str) -> Result<(Shared, bool), super::Unparsed> {
        if let Some(why) = self.hazards.values().next() {
            return Err(super::Unparsed(why.clone()));
        }
        let (infos, kept) = classify_bounded(sql)?;
        // Changing the client encoding changes how the target reads every
        // later statement, including ones already pipelined behind this
        // one: such a statement is itself unreadable, and until the target
        // reports a safe encoding so is everything after it.
        if infos.iter().any(|i| {
            i.kinds.contains("set") || i.functions.iter().any(|f| f.ends_with("set_config"))
        }) && {
            let lower = sql.to_lowercase();
            lower.contains("encoding") || lower.contains("names")
        } {
            let why = "statement may change client_encoding".to_owned();
            self.hazards.insert("client_encoding".into(), why.clone());
            return Err(super::Unparsed(why));
        }
        Ok((infos, kept))
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
                sql: kept(&self.shown(sql)),
            },
        }
    }

    /// Statement text as an operator is shown it: each statement in it
    /// (the one held, and what a prepared name may run, which the tracker
    /// notes after its own markers) masked like the recording.
    fn shown(&self, text: &str) -> String {
        let Some(masker) = self.policy.masker else {
            return text.to_owned();
        };
        let mut stats = crate::mask::MaskStats::default();
        let mut mask = |sql: &str| {
            masker
                .mask_sql(sql, &mut stats)
                .text
                .unwrap_or_else(|| sql.to_owned())
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        loop {
            let next = [OR_KEPT, EXECUTE_RUNS]
                .iter()
                .filter_map(|m| rest.find(m).map(|at| (at, *m)))
                .min();
            let Some((at, marker)) = next else {
                out.push_str(&mask(rest));
                return out;
            };
            out.push_str(&mask(&rest[..at]));
            out.push_str(marker);
            rest = &rest[at + marker.len()..];
            if marker == EXECUTE_RUNS
                && let Some(end) = rest.find(RUNS)
                && !rest[..end].contains('\n')
            {
                out.push_str(&rest[..end + RUNS.len()]);
                rest = &rest[end + RUNS.len()..];
            }
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
    /// Returns false when the session holds too many names to track
    /// another (the caller refuses the statement).
    #[must_use]
    fn remember(&mut self, name: String, info: StatementInfo, sql: &str, verdict: Verdict) -> bool {
        if self.statements.len() >= MAX_STATEMENTS && !self.statements.contains_key(&name) {
            return false;
        }
        let unnamed = name.is_empty();
        match self.statements.get_mut(&name) {
            Some(old) if !unnamed => {
                old.absorb(info, sql, verdict);
                old.refused = false;
            }
            _ => {
                let previous = self.statements.insert(
                    name,
                    Prepared {
                        info,
                        sql: kept(sql),
                        verdict,
                        credits: 0,
                        refused: false,
                    },
                );
                if unnamed {
                    self.open_changes.push(previous);
                }
            }
        }
        true
    }

    /// A simple-protocol Query (one or more statements).
    pub fn query(&mut self, sql: &str) -> (Decision, Option<Mentioned>) {
        if !self.watching() {
            return (Decision::Forward, None);
        }
        let (infos, kept) = match self.read_shared(sql) {
            Ok(read) => read,
            Err(e) => {
                let verdict = self.policy.unreadable(&e.0);
                return (
                    self.verdict_to_decision(verdict, sql),
                    Some(self.all_mentioned()),
                );
            }
        };
        if let Some(mentioned) = self.allowed.get(&infos) {
            return (Decision::Forward, Some(mentioned.clone()));
        }
        // Judged by the policy alone (no names involved): the answer for
        // every statement of this shape, kept if it allows.
        let judged_alone = kept
            && infos
                .iter()
                .all(|i| i.prepares.is_none() && i.executes.is_none() && i.deallocates.is_none());
        let shared = judged_alone.then(|| infos.clone());
        let infos = std::rc::Rc::unwrap_or_clone(infos);
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
                executed.push_str(&format!("{EXECUTE_RUNS}{name}{RUNS}{}", p.sql));
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
            // FETCH from a cursor and statements the classifier has no
            // kind for return rows whose columns it cannot name.
            if info.kinds.contains("other") {
                mentioned.insert(super::classify::ANY_COLUMN.to_owned());
            }
            match prepares_name {
                // Preparing runs nothing: a statement that needs approval
                // is held when it is executed, each time.
                Some(name) => {
                    if let Verdict::Block { .. } = v {
                        verdict = verdict.and(v.clone());
                    }
                    if !self.remember(name, info, sql, v) {
                        verdict = verdict.and(too_many());
                    }
                }
                None => verdict = verdict.and(v),
            }
            // DEALLOCATE forgets nothing (see `statements`).
            let _ = deallocates_name;
        }
        if matches!(verdict, Verdict::Block { .. })
            && let Some(saved) = saved
        {
            self.statements = saved;
        }
        if let (Some(shared), Verdict::Allow) = (shared, &verdict) {
            self.allowed.keep(shared, mentioned.clone());
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
                if matches!(verdict, Verdict::Block { .. })
                    || !self.remember(name.to_owned(), info, sql, verdict.clone())
                {
                    self.refused_parse(name);
                }
                return (
                    self.verdict_to_decision(verdict, sql),
                    Some(self.all_mentioned()),
                );
            }
        };
        // A prepared `EXECUTE d` runs whatever d is when it runs, which a
        // later PREPARE can change: it cannot be judged now.
        if self.policy.enforcing() && infos.iter().any(|i| i.executes.is_some()) {
            self.refused_parse(name);
            return (
                refuse(
                    "unknown-statement",
                    "EXECUTE inside a prepared statement cannot be checked against policy",
                ),
                None,
            );
        }
        let mut verdict = Verdict::Allow;
        let mut merged = StatementInfo::default();
        for info in infos {
            let (info, v) = match self.resolve(info) {
                Ok(r) => r,
                Err(d) => return (d, None),
            };
            verdict = verdict.and(v);
            union(&mut merged, info);
        }
        let mentioned = merged.columns.clone();
        if matches!(verdict, Verdict::Block { .. }) {
            self.refused_parse(name);
        } else if !self.remember(name.to_owned(), merged, sql, verdict.clone()) {
            self.refused_parse(name);
            return (self.verdict_to_decision(too_many(), sql), None);
        }
        (self.verdict_to_decision(verdict, sql), Some(mentioned))
    }

    /// The Parse of `name` was refused (blocked, denied, timed out). Its
    /// stand-in is sent under the same name, so for the unnamed statement
    /// the target drops the previous one, as PostgreSQL does for any failed
    /// Parse, and a new name is not created; a named statement that existed
    /// keeps whatever it had (and its verdict).
    pub fn refused_parse(&mut self, name: &str) {
        let new = !self.statements.contains_key(name);
        if name.is_empty() || (new && self.statements.len() < MAX_STATEMENTS) {
            let previous = self.statements.insert(
                name.to_owned(),
                Prepared {
                    info: StatementInfo::default(),
                    sql: String::new(),
                    verdict: Verdict::Allow,
                    credits: 0,
                    refused: true,
                },
            );
            if name.is_empty() {
                self.open_changes.push(previous);
            }
        }
    }

    /// An operator approved the Parse of `name`: one execution may run.
    pub fn grant(&mut self, name: &str) {
        if let Some(p) = self.statements.get_mut(name) {
            p.credits += 1;
        }
    }

    /// Bind: the portal takes its statement's verdict now, and an approved
    /// Parse's one execution.
    pub fn bind(&mut self, portal: &str, statement: &str) -> Decision {
        if !self.watching() {
            return Decision::Forward;
        }
        if self.portals.len() >= MAX_STATEMENTS && !self.portals.contains_key(portal) {
            return self.verdict_to_decision(too_many(), "");
        }
        let mut approved = false;
        let entry = self.statements.get_mut(statement).map(|p| {
            if p.credits > 0 {
                p.credits -= 1;
                approved = true;
            }
            p.clone()
        });
        self.portals.insert(
            portal.to_owned(),
            Portal {
                statement: entry,
                statement_name: statement.to_owned(),
                approved,
            },
        );
        Decision::Forward
    }

    /// Execute of a portal: statements that need approval are held at
    /// every run unless their Parse was just approved.
    pub fn execute(&mut self, portal: &str) -> (Decision, Option<Mentioned>) {
        if !self.watching() {
            return (Decision::Forward, None);
        }
        let enforcing = self.policy.enforcing();
        let Some(p) = self.portals.get(portal) else {
            // Not bound through the gateway: a SQL cursor (DECLARE) at best.
            return if enforcing {
                (
                    refuse(
                        "unknown-statement",
                        format!("portal {portal:?} was not bound through the gateway"),
                    ),
                    None,
                )
            } else {
                (Decision::Forward, Some(self.all_mentioned()))
            };
        };
        let Some(stmt) = &p.statement else {
            return if enforcing {
                (
                    refuse(
                        "unknown-statement",
                        format!(
                            "prepared statement {:?} was not seen by the gateway",
                            p.statement_name
                        ),
                    ),
                    None,
                )
            } else {
                (Decision::Forward, Some(self.all_mentioned()))
            };
        };
        if stmt.refused {
            return (Decision::Forward, None);
        }
        let mentioned = Some(stmt.info.columns.clone());
        match &stmt.verdict {
            Verdict::Approve {
                rule,
                timeout,
                approvers,
            } if !p.approved => (
                Decision::Hold {
                    rule: rule.clone(),
                    timeout: *timeout,
                    approvers: approvers.clone(),
                    sql: stmt.sql.clone(),
                },
                mentioned,
            ),
            // Approved, allowed (a blocked statement is never remembered).
            _ => (Decision::Forward, mentioned),
        }
    }

    /// An operator approved an Execute: the portal's run may go on.
    pub fn approve_portal(&mut self, portal: &str) {
        if let Some(p) = self.portals.get_mut(portal) {
            p.approved = true;
        }
    }

    /// Close of a portal (`P`). Statements are never forgotten (see
    /// `statements`).
    pub fn close(&mut self, what: u8, name: &str) {
        if what == b'P' {
            self.portals.remove(name);
        }
    }

    /// Fast-path FunctionCall names a function by OID only, which cannot be
    /// checked against function rules: refused under an enforcing policy.
    /// Its result (FunctionCallResponse) is not masked either, so it is
    /// refused under a masking policy too.
    pub fn function_call(&self) -> Decision {
        if self.policy.enforcing() || self.policy.masker.is_some() {
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
pub(crate) mod tests {
    use super::*;
    use crate::policy::{Action, NamePattern, Rule, Unreadable};

    pub(crate) fn rule(action: Action, statements: &[&str]) -> Rule {
        Rule {
            name: statements.join("+"),
            action,
            statements: statements.iter().map(|s| s.to_string()).collect(),
            tables: vec![],
            functions: vec![],
            without_where: false,
        }
    }

    pub(crate) fn approve() -> Action {
        Action::Approve {
            timeout: Duration::from_secs(60),
            approvers: vec![],
        }
    }

    pub(crate) fn tracker(rules: Vec<Rule>) -> PolicyTracker {
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

    #[test]
    fn approvers_are_shown_masked_statements() {
        let masker = crate::mask::Masker::new(
            vec![crate::mask::MaskRule {
                name: "pii".into(),
                columns: vec!["ssn".into()],
                detectors: vec!["email".into()],
                regex: vec![],
                strategy: crate::mask::Strategy::Redact,
            }],
            [1; 32],
        )
        .unwrap();
        let mut t = PolicyTracker::new(Arc::new(SqlPolicy {
            name: "p".into(),
            rules: vec![rule(approve(), &["update"])],
            default_block: false,
            unparsed: Unreadable::Block,
            masker: Some(Box::leak(Box::new(masker))),
        }));
        let (d, _) = t.query("update t set ssn = '123-45-6789', note = 'a@b.org' where id = 1");
        let Decision::Hold { sql, .. } = d else {
            panic!("not held: {d:?}");
        };
        assert_eq!(
            sql,
            "update t set ssn = '[redacted]', note = '[redacted]' where id = 1"
        );
        // What a prepared name runs is shown masked too.
        let (d, _) = t.query("prepare p as update t set ssn = '987-65-4320' where id = 2");
        assert!(!is_held(&d) && !is_refused(&d), "{d:?}");
        let (d, _) = t.query("execute p");
        let Decision::Hold { sql, .. } = d else {
            panic!("not held: {d:?}");
        };
        assert!(!sql.contains("987-65-4320"), "{sql}");
        assert!(sql.contains("-- EXECUTE p runs: "), "{sql}");
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
        // Not forgotten: the target may have skipped the DEALLOCATE.
        assert_eq!(t.query("EXECUTE q").0, Decision::Forward);
    }

    #[test]
    fn a_skipped_deallocate_cannot_launder_a_name() {
        let mut t = tracker(vec![rule(approve(), &["delete"])]);
        assert_eq!(t.query("PREPARE d AS DELETE FROM t").0, Decision::Forward);
        // The target fails before DEALLOCATE and keeps d = DELETE.
        assert_eq!(t.query("SELECT 1/0; DEALLOCATE d").0, Decision::Forward);
        assert_eq!(t.query("PREPARE d AS SELECT 1").0, Decision::Forward);
        assert!(is_held(&t.query("EXECUTE d").0));
        // In one message, in order: still the stricter of both.
        assert!(is_held(
            &t.query("DEALLOCATE d; PREPARE d AS SELECT 2; EXECUTE d").0
        ));
    }

    #[test]
    fn a_skipped_unnamed_parse_keeps_the_old_verdict() {
        let mut t = tracker(vec![rule(approve(), &["delete"])]);
        assert!(is_held(&t.parse("", "DELETE FROM t").0));
        t.grant("");
        t.bind("p1", "");
        t.sync();
        t.unit_done(false);
        assert_eq!(t.execute("p1").0, Decision::Forward);
        // A failing Bind makes the target skip the next Parse of "".
        t.bind("x", "nope");
        assert_eq!(t.parse("", "SELECT 1").0, Decision::Forward);
        t.sync();
        t.unit_done(true);
        t.bind("p2", "");
        assert!(
            is_held(&t.execute("p2").0),
            "the target may still hold the DELETE"
        );
        // Without an error the new statement replaced the old.
        assert_eq!(t.parse("", "SELECT 1").0, Decision::Forward);
        t.sync();
        t.unit_done(false);
        t.bind("p3", "");
        assert_eq!(t.execute("p3").0, Decision::Forward);
    }

    #[test]
    fn a_portal_runs_what_it_was_bound_to() {
        let mut t = tracker(vec![rule(approve(), &["delete"])]);
        assert!(is_held(&t.parse("", "DELETE FROM t").0));
        t.grant("");
        t.bind("p1", "");
        t.bind("p2", "");
        assert_eq!(t.parse("", "SELECT 1").0, Decision::Forward);
        assert_eq!(t.execute("p1").0, Decision::Forward, "approved");
        assert!(is_held(&t.execute("p2").0), "one approval, one portal");
        assert!(is_refused(&t.parse("x", "EXECUTE d").0));
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
        assert_eq!(t.execute("").0, Decision::Forward, "the same run goes on");
        t.bind("", "s");
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
        // A portal the gateway did not bind cannot be judged.
        assert!(is_refused(&t.execute("cursor_1").0));
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
