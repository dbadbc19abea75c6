//! A query session as a list of statements: what the live view scrolls
//! and the replay steps through.
//!
//! Events arrive in the order the session saw them: a statement (Query,
//! or Parse/Bind/Execute), then its results (columns, rows, a completion
//! or an error) — pipelined clients send several statements before the
//! first result. Results belong to the oldest statement still waiting
//! for them; an Execute is answered by one completion, a simple Query by
//! as many as it has statements, so it is closed when the next statement
//! starts. Policy events (blocked, approval, masked) belong to the
//! statement they judged. Everything else (connect, cancel, end, admin
//! commands, SFTP) becomes a note, so every recording replays as a
//! timeline.

use std::collections::{HashMap, VecDeque};

use gatehouse_actors::recording::{Event, EventKind, clean};

/// Rows kept per statement for display: the recording holds more, and
/// the screen shows fewer.
pub const ROWS_KEPT: usize = 200;

/// How a statement ended, so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// No answer yet.
    Running,
    WaitingForApproval {
        id: String,
    },
    Ok {
        tag: String,
    },
    Error {
        code: String,
        message: String,
    },
    Blocked {
        rule: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Unix µs when the statement (or note) was recorded.
    pub at: i64,
    /// The statement, or the note's text (already cleaned for display).
    pub text: String,
    pub note: bool,
    pub outcome: StepOutcome,
    /// Unix µs of the answer.
    pub done_at: Option<i64>,
    pub rows: u64,
    pub rows_recorded: u64,
    pub columns: Vec<String>,
    pub sample: Vec<Vec<Option<String>>>,
    /// Masking that changed this statement's result: (rule, what, count).
    pub masked: Vec<(String, String, u64)>,
    /// Approval decisions (text), notices and other remarks.
    pub remarks: Vec<String>,
    /// Bind parameters, as recorded.
    pub params: Vec<Option<String>>,
    extended: bool,
}

impl Step {
    fn new(at: i64, text: String, note: bool) -> Step {
        Step {
            at,
            text,
            note,
            outcome: StepOutcome::Running,
            done_at: None,
            rows: 0,
            rows_recorded: 0,
            columns: Vec::new(),
            sample: Vec::new(),
            masked: Vec::new(),
            remarks: Vec::new(),
            params: Vec::new(),
            extended: false,
        }
    }

    /// Microseconds from statement to answer.
    pub fn duration(&self) -> Option<i64> {
        self.done_at.map(|d| d - self.at)
    }
}

/// Steps built from events, keeping at most `cap` (the oldest go).
#[derive(Debug, Clone)]
pub struct Timeline {
    steps: VecDeque<Step>,
    /// Index into `steps` of statements waiting for results, oldest first,
    /// counted from `first`.
    open: VecDeque<u64>,
    /// How many steps were ever dropped off the front.
    first: u64,
    cap: usize,
    /// Parsed statements and bound portals, for Execute's text.
    statements: HashMap<String, String>,
    portals: HashMap<String, (String, Vec<Option<String>>)>,
    /// The most recently answered statement (masking events follow it).
    last_done: Option<u64>,
    /// SSH channels whose command is running: channel to step.
    running: HashMap<u32, u64>,
}

impl Timeline {
    pub fn new(cap: usize) -> Timeline {
        Timeline {
            steps: VecDeque::new(),
            open: VecDeque::new(),
            first: 0,
            cap: cap.max(1),
            statements: HashMap::new(),
            portals: HashMap::new(),
            last_done: None,
            running: HashMap::new(),
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>, cap: usize) -> Timeline {
        let mut t = Timeline::new(cap);
        for e in events {
            t.push(e);
        }
        t
    }

    pub fn steps(&self) -> &VecDeque<Step> {
        &self.steps
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Steps dropped off the front because of the cap.
    pub fn dropped(&self) -> u64 {
        self.first
    }

    fn get(&mut self, n: u64) -> Option<&mut Step> {
        let i = n.checked_sub(self.first)?;
        self.steps.get_mut(i as usize)
    }

    fn add(&mut self, step: Step) -> u64 {
        let n = self.first + self.steps.len() as u64;
        self.steps.push_back(step);
        if self.steps.len() > self.cap {
            self.steps.pop_front();
            self.first += 1;
        }
        n
    }

    fn statement(&mut self, at: i64, text: String, extended: bool) {
        // A simple Query that already has answers is finished once the
        // client moves on.
        while let Some(&front) = self.open.front() {
            let answered = self
                .get(front)
                .is_none_or(|s| !s.extended && s.done_at.is_some());
            if answered {
                self.open.pop_front();
            } else {
                break;
            }
        }
        let mut step = Step::new(at, text, false);
        step.extended = extended;
        self.statement_step(step);
    }

    fn statement_step(&mut self, step: Step) -> u64 {
        let n = self.add(step);
        self.open.push_back(n);
        n
    }

    /// An SSH command (exec, shell, subsystem) or a line typed in a shell:
    /// policy events that follow belong to it; an exec's exit answers it.
    fn command(&mut self, at: i64, text: String, done: bool) -> u64 {
        // Finished commands no longer take policy events.
        let (first, steps) = (self.first, &self.steps);
        self.open.retain(|&n| {
            n.checked_sub(first)
                .and_then(|i| steps.get(i as usize))
                .is_some_and(|s| s.done_at.is_none())
        });
        let mut step = Step::new(at, text, false);
        if done {
            step.outcome = StepOutcome::Ok {
                tag: "typed".into(),
            };
            step.done_at = Some(at);
        }
        self.statement_step(step)
    }

    fn note(&mut self, at: i64, text: String) {
        self.add(Step::new(at, text, true));
    }

    /// The statement results belong to now.
    fn answering(&mut self) -> Option<u64> {
        self.open.front().copied()
    }

    /// The statement policy events belong to: the one most recently sent.
    fn latest(&self) -> Option<u64> {
        self.open.back().copied()
    }

    fn answered(&mut self, at: i64, outcome: StepOutcome, rows: u64, recorded: u64) {
        let Some(n) = self.answering() else {
            if let StepOutcome::Error { code, message } = outcome {
                self.note(at, format!("error {code}: {message}"));
            }
            return;
        };
        let extended = match self.get(n) {
            Some(s) => {
                // A blocked statement keeps that verdict over the error the
                // client saw for it.
                if !matches!(s.outcome, StepOutcome::Blocked { .. }) {
                    s.outcome = outcome.clone();
                }
                s.done_at = Some(at);
                s.rows += rows;
                s.rows_recorded += recorded;
                s.extended
            }
            None => true,
        };
        self.last_done = Some(n);
        // An error ends a simple Query too (the rest of it is skipped).
        if extended || matches!(outcome, StepOutcome::Error { .. }) {
            self.open.pop_front();
        }
    }

    pub fn push(&mut self, e: &Event) {
        let at = e.at;
        match &e.kind {
            EventKind::Query { sql } => self.statement(at, clean(sql), false),
            EventKind::Parse { statement, sql } => {
                self.statements.insert(statement.clone(), sql.clone());
            }
            EventKind::Bind {
                portal,
                statement,
                params,
            } => {
                let sql = self.statements.get(statement).cloned().unwrap_or_default();
                self.portals.insert(portal.clone(), (sql, params.clone()));
            }
            EventKind::Execute { portal, .. } => {
                let (sql, params) = self
                    .portals
                    .get(portal)
                    .cloned()
                    .unwrap_or_else(|| (format!("execute portal {portal:?}"), Vec::new()));
                self.statement(at, clean(&sql), true);
                if let Some(n) = self.latest()
                    && let Some(s) = self.get(n)
                {
                    s.params = params;
                }
            }
            EventKind::FunctionCall { oid, .. } => {
                self.statement(at, format!("function call (oid {oid})"), true)
            }
            EventKind::Columns { names } => {
                if let Some(n) = self.answering()
                    && let Some(s) = self.get(n)
                {
                    s.columns = names.iter().map(|c| clean(c)).collect();
                    s.sample.clear();
                }
            }
            EventKind::Row { values } => {
                if let Some(n) = self.answering()
                    && let Some(s) = self.get(n)
                    && s.sample.len() < ROWS_KEPT
                {
                    s.sample
                        .push(values.iter().map(|v| v.as_deref().map(clean)).collect());
                }
            }
            EventKind::Complete {
                tag,
                rows,
                rows_recorded,
            } => self.answered(
                at,
                StepOutcome::Ok { tag: clean(tag) },
                *rows,
                *rows_recorded,
            ),
            EventKind::Error { code, message, .. } => self.answered(
                at,
                StepOutcome::Error {
                    code: clean(code),
                    message: clean(message),
                },
                0,
                0,
            ),
            EventKind::Notice { message, .. } => {
                if let Some(n) = self.latest()
                    && let Some(s) = self.get(n)
                {
                    s.remarks.push(format!("notice: {}", clean(message)));
                }
            }
            EventKind::Blocked { rule, reason } => {
                if let Some(n) = self.latest()
                    && let Some(s) = self.get(n)
                {
                    s.outcome = StepOutcome::Blocked { rule: clean(rule) };
                    s.remarks.push(format!("blocked: {}", clean(reason)));
                }
            }
            EventKind::ApprovalRequested { id, rule, .. } => {
                if let Some(n) = self.latest()
                    && let Some(s) = self.get(n)
                {
                    s.outcome = StepOutcome::WaitingForApproval { id: clean(id) };
                    s.remarks.push(format!(
                        "approval {} requested (rule {})",
                        clean(id),
                        clean(rule)
                    ));
                }
            }
            EventKind::ApprovalDecided {
                id,
                decision,
                by,
                reason,
            } => {
                let text = match reason {
                    Some(r) => format!(
                        "approval {} {decision} by {}: {}",
                        clean(id),
                        clean(by),
                        clean(r)
                    ),
                    None => format!("approval {} {decision} by {}", clean(id), clean(by)),
                };
                let target = self.latest();
                match target.and_then(|n| self.get(n)) {
                    Some(s) => {
                        if matches!(s.outcome, StepOutcome::WaitingForApproval { .. }) {
                            s.outcome = StepOutcome::Running;
                        }
                        s.remarks.push(text);
                    }
                    None => self.note(at, text),
                }
            }
            EventKind::Masked { counts } => {
                let target = self.last_done.or(self.latest());
                if let Some(s) = target.and_then(|n| self.get(n)) {
                    s.masked
                        .extend(counts.iter().map(|(r, w, c)| (clean(r), clean(w), *c)));
                }
            }
            EventKind::Opaque { .. } => {}
            // The terminal shows these (see `player::TermSource`).
            EventKind::SshData { .. } | EventKind::SshResize { .. } => {}
            EventKind::SshStart {
                channel,
                request,
                command,
            } => {
                let text = match request.as_str() {
                    "exec" => clean(command),
                    "subsystem" => format!("subsystem {}", clean(command)),
                    other => clean(other),
                };
                let n = self.command(at, text, false);
                self.running.insert(*channel, n);
            }
            EventKind::SshLine { line, .. } => {
                self.command(at, format!("$ {}", clean(line)), true);
            }
            EventKind::SshExit {
                channel,
                status,
                signal,
            } => {
                let outcome = match (status, signal) {
                    (_, Some(sig)) => StepOutcome::Error {
                        code: format!("signal {}", clean(sig)),
                        message: String::new(),
                    },
                    (Some(0), None) => StepOutcome::Ok {
                        tag: "exit 0".into(),
                    },
                    (Some(code), None) => StepOutcome::Error {
                        code: format!("exit {code}"),
                        message: String::new(),
                    },
                    (None, None) => StepOutcome::Ok {
                        tag: "ended".into(),
                    },
                };
                match self.running.remove(channel).and_then(|n| self.get(n)) {
                    Some(s) => {
                        if !matches!(s.outcome, StepOutcome::Blocked { .. }) {
                            s.outcome = outcome;
                        }
                        s.done_at = Some(at);
                    }
                    None => self.note(at, describe(&e.kind)),
                }
            }
            other => {
                let text = describe(other);
                self.note(at, text);
            }
        }
    }
}

/// One line for an event that is not part of a statement.
fn describe(kind: &EventKind) -> String {
    clean(&match kind {
        EventKind::Connected { target } => format!("connected to {target}"),
        EventKind::Cancel => "cancel requested".into(),
        EventKind::Notification { channel, payload } => {
            format!("notification on {channel}: {payload}")
        }
        EventKind::Copy {
            direction,
            bytes,
            messages,
        } => {
            format!("copy from {direction:?}: {bytes} bytes in {messages} messages").to_lowercase()
        }
        EventKind::CopyData {
            direction,
            data,
            cut,
        } => {
            let rows = data.lines().count();
            let more = if *cut > 0 {
                format!(", {cut} more bytes not recorded")
            } else {
                String::new()
            };
            format!(
                "copy data from {}: {rows} rows recorded{more}: {data}",
                format!("{direction:?}").to_lowercase()
            )
        }
        EventKind::End { outcome, reason } => match reason {
            Some(r) => format!("session ended: {} ({r})", outcome.as_str()),
            None => format!("session ended: {}", outcome.as_str()),
        },
        EventKind::AdminCommand { command } => format!("command: {command}"),
        EventKind::AdminExit { status, bytes } => {
            format!("command exited with status {status} after {bytes} bytes")
        }
        EventKind::Sftp {
            op, path, outcome, ..
        } => format!("sftp {op} {path}: {outcome}"),
        // The SSH gateway's channel, file and forward events, and any
        // other kind, as `recordings show` words them.
        other => gatehouse_actors::recording::describe(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_actors::recording::{Direction, Outcome};

    fn ev(at: i64, kind: EventKind) -> Event {
        Event {
            seq: at as u64,
            at,
            dir: Direction::Client,
            kind,
        }
    }

    #[test]
    fn statements_get_their_own_results_even_when_pipelined() {
        let events = vec![
            ev(
                1,
                EventKind::Connected {
                    target: "db".into(),
                },
            ),
            ev(
                2,
                EventKind::Query {
                    sql: "select 1; select 2".into(),
                },
            ),
            ev(
                3,
                EventKind::Columns {
                    names: vec!["a".into()],
                },
            ),
            ev(
                3,
                EventKind::Row {
                    values: vec![Some("1".into())],
                },
            ),
            ev(
                4,
                EventKind::Complete {
                    tag: "SELECT 1".into(),
                    rows: 1,
                    rows_recorded: 1,
                },
            ),
            ev(
                5,
                EventKind::Complete {
                    tag: "SELECT 1".into(),
                    rows: 1,
                    rows_recorded: 1,
                },
            ),
            ev(
                6,
                EventKind::Parse {
                    statement: "s".into(),
                    sql: "update t set x = $1".into(),
                },
            ),
            ev(
                6,
                EventKind::Bind {
                    portal: "".into(),
                    statement: "s".into(),
                    params: vec![Some("7".into())],
                },
            ),
            ev(
                6,
                EventKind::Execute {
                    portal: "".into(),
                    max_rows: 0,
                },
            ),
            ev(
                6,
                EventKind::Parse {
                    statement: "".into(),
                    sql: "select email from c".into(),
                },
            ),
            ev(
                6,
                EventKind::Bind {
                    portal: "".into(),
                    statement: "".into(),
                    params: vec![],
                },
            ),
            ev(
                6,
                EventKind::Execute {
                    portal: "".into(),
                    max_rows: 0,
                },
            ),
            ev(
                8,
                EventKind::Complete {
                    tag: "UPDATE 3".into(),
                    rows: 0,
                    rows_recorded: 0,
                },
            ),
            ev(
                9,
                EventKind::Columns {
                    names: vec!["email".into()],
                },
            ),
            ev(
                9,
                EventKind::Complete {
                    tag: "SELECT 5".into(),
                    rows: 5,
                    rows_recorded: 5,
                },
            ),
            ev(
                9,
                EventKind::Masked {
                    counts: vec![("r".into(), "email".into(), 5)],
                },
            ),
            ev(
                10,
                EventKind::End {
                    outcome: Outcome::Closed,
                    reason: None,
                },
            ),
        ];
        let t = Timeline::from_events(&events, 100);
        let steps: Vec<_> = t.steps().iter().collect();
        assert_eq!(steps.len(), 5);
        assert!(steps[0].note && steps[0].text == "connected to db");
        assert_eq!(steps[1].rows, 2);
        assert_eq!(steps[1].sample, vec![vec![Some("1".to_owned())]]);
        assert_eq!(steps[2].text, "update t set x = $1");
        assert_eq!(steps[2].params, vec![Some("7".to_owned())]);
        assert_eq!(
            steps[2].outcome,
            StepOutcome::Ok {
                tag: "UPDATE 3".into()
            }
        );
        assert_eq!(steps[2].duration(), Some(2));
        assert_eq!(steps[3].text, "select email from c");
        assert_eq!(steps[3].rows, 5);
        assert_eq!(steps[3].masked.len(), 1);
        assert!(steps[4].note && steps[4].text == "session ended: closed");
    }

    #[test]
    fn policy_verdicts_stay_with_their_statement() {
        let events = vec![
            ev(
                1,
                EventKind::Query {
                    sql: "drop table t".into(),
                },
            ),
            ev(
                1,
                EventKind::Blocked {
                    rule: "no-ddl".into(),
                    reason: "no".into(),
                },
            ),
            ev(
                2,
                EventKind::Error {
                    severity: "ERROR".into(),
                    code: "42501".into(),
                    message: "blocked".into(),
                },
            ),
            ev(
                3,
                EventKind::Query {
                    sql: "delete from t where id = 1".into(),
                },
            ),
            ev(
                3,
                EventKind::ApprovalRequested {
                    id: "ab".into(),
                    rule: "r".into(),
                    deadline: 9,
                },
            ),
        ];
        let mut t = Timeline::from_events(&events, 100);
        assert_eq!(
            t.steps()[0].outcome,
            StepOutcome::Blocked {
                rule: "no-ddl".into()
            }
        );
        assert_eq!(
            t.steps()[1].outcome,
            StepOutcome::WaitingForApproval { id: "ab".into() }
        );
        t.push(&ev(
            4,
            EventKind::ApprovalDecided {
                id: "ab".into(),
                decision: "denied".into(),
                by: "alice".into(),
                reason: Some("not now".into()),
            },
        ));
        t.push(&ev(
            4,
            EventKind::Error {
                severity: "ERROR".into(),
                code: "42501".into(),
                message: "denied".into(),
            },
        ));
        assert_eq!(
            t.steps()[1].outcome,
            StepOutcome::Error {
                code: "42501".into(),
                message: "denied".into()
            }
        );
        assert!(
            t.steps()[1]
                .remarks
                .iter()
                .any(|r| r.contains("denied by alice: not now"))
        );
    }

    #[test]
    fn the_cap_keeps_the_newest_steps_and_escapes_control_text() {
        let mut t = Timeline::new(3);
        for i in 0..10 {
            t.push(&ev(
                i,
                EventKind::Query {
                    sql: format!("select {i}\n\u{1b}[2J"),
                },
            ));
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.dropped(), 7);
        assert!(t.steps()[2].text.starts_with("select 9\\n\\u{1b}"));
    }
}
