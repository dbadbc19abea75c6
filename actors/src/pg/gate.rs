//! The statement gate: the client side of policy.
//!
//! Every client message that runs SQL is judged before it is forwarded
//! (`policy::PolicyTracker`). A refused message is *replaced* on the wire by
//! one that fails in the target's parser — `gatehouse_refused_<nonce>_<n>`,
//! a syntax error that touches nothing — and the target pump swaps the
//! target's syntax error for the client's 42501. Going through the target
//! keeps PostgreSQL's own semantics without the gateway re-implementing
//! them: the answer arrives in pipeline order, an open transaction is
//! aborted exactly as a real error would abort it, and ReadyForQuery
//! reports the true transaction state. The nonce is per session and never
//! shown, so a client cannot forge a rewrite.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::BytesMut;

use super::codec::{self, CodecError};
use super::encoding::{SessionEncoding, name_key};
use super::messages;
use crate::policy::copy_source::{CopySource, copy_sources};
use crate::policy::tracker::{Decision, Mentioned};
use crate::policy::{PolicyTracker, SqlPolicy};

/// SQLSTATE for statements refused by policy or denied by an operator.
pub const BLOCKED: &str = "42501";
/// SQLSTATE when an approval times out (query_canceled).
pub const APPROVAL_TIMED_OUT: &str = "57014";

/// Rewrites awaiting their target error; older ones are dropped beyond
/// this (a rewrite whose message the target skipped after an earlier
/// error in the same pipeline never comes back).
const MAX_PENDING_REWRITES: usize = 1024;

/// State both pumps share (they run in one task, hence `Rc<RefCell>`).
#[derive(Default)]
pub struct Shared {
    /// Substitute token → (SQLSTATE, message) the client should see.
    rewrites: HashMap<String, (&'static str, String)>,
    order: VecDeque<String>,
    /// Gateway messages (notices) to write to the client between target
    /// batches.
    pub outbox: BytesMut,
    /// What statements whose results are still coming mention, one unit
    /// per ReadyForQuery, for masking computed columns and COPY data.
    pub units: VecDeque<Unit>,
    /// Extended-protocol messages since the last Sync.
    pub open: Unit,
    /// Settings the target reported (ParameterStatus) since the gate last
    /// looked, for [`crate::policy::tracker::lexing_hazard`].
    pub settings: Vec<(String, String)>,
    /// The target reported an error since its last ReadyForQuery.
    pub unit_error: bool,
    /// Per ReadyForQuery since the gate last looked: whether its pipeline
    /// had an error (so the target may have skipped some of it).
    pub unit_results: Vec<bool>,
}

/// Units (pipelines) a client may have unanswered before the session is
/// ended: bounds the bookkeeping a client that never reads can cause.
pub const MAX_UNANSWERED: usize = 100_000;

impl Shared {
    /// The error that replaces a target error carrying `message`, if it is
    /// the answer to one of this session's substitutes.
    pub fn take_rewrite(&mut self, message: &str) -> Option<(&'static str, String)> {
        if self.rewrites.is_empty() {
            return None;
        }
        let start = message.find("gatehouse_refused_")?;
        let token: String = message[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        self.rewrites.remove(&token)
    }

    /// Whether [`Self::mentioned`] is `m`, without building it when one
    /// side holds nothing (a simple Query: the pipeline has no statement).
    pub fn mentioned_is(&self, m: &Mentioned) -> bool {
        match self.units.front() {
            Some(front) if self.open.mentioned.is_empty() => front.mentioned == *m,
            None => self.open.mentioned == *m,
            Some(_) => self.mentioned() == *m,
        }
    }

    /// Everything that could be mentioned by the result being relayed now.
    pub fn mentioned(&self) -> Mentioned {
        let mut m = self.open.mentioned.clone();
        if let Some(front) = self.units.front() {
            m.extend(front.mentioned.iter().cloned());
        }
        m
    }

    /// A RowDescription or NoData arrived outside a simple query: whether it
    /// answers a Describe the gateway injected (and must not be relayed).
    pub fn take_describe(&mut self) -> Option<bool> {
        match self.units.front_mut() {
            Some(u) if u.query => None,
            Some(u) => u.describes.pop_front(),
            None => self.open.describes.pop_front(),
        }
    }
}

pub type SharedRef = Rc<RefCell<Shared>>;

/// The statements answered by one ReadyForQuery.
#[derive(Debug, Default)]
pub struct Unit {
    /// A simple Query: RowDescriptions come with its results, not as
    /// answers to Describe.
    pub query: bool,
    pub mentioned: Mentioned,
    /// Its `COPY ... TO STDOUT`s, in order (simple-protocol queries).
    pub copies: VecDeque<CopySource>,
    /// Extended protocol: one entry per Describe sent, in order; `true`
    /// for those the gateway injected.
    pub describes: VecDeque<bool>,
}

/// What to do with one client frame.
pub enum Step {
    Forward,
    /// Send these bytes instead (the refused message's substitute).
    Replace(BytesMut, Refusal),
    /// Wait for an operator first.
    Hold(Held),
}

/// A refusal, for the recording.
pub struct Refusal {
    pub rule: String,
    pub message: String,
}

/// A held message.
pub struct Held {
    pub rule: String,
    pub timeout: std::time::Duration,
    pub approvers: Vec<String>,
    pub sql: String,
    /// Parse of this statement name (as sent): an approval grants one
    /// execution.
    pub parse_of: Option<Vec<u8>>,
    /// Execute of this portal (as sent): an approval lets the portal's run
    /// go on.
    pub portal: Option<Vec<u8>>,
    /// The message's tag (to build a substitute on denial).
    pub tag: u8,
}

pub struct Gate {
    tracker: PolicyTracker,
    nonce: String,
    counter: u64,
    /// The policy masks: COPY statements are looked at for their columns,
    /// and every Execute's result is described.
    masking: bool,
    /// Extended-protocol messages were sent since the last Sync.
    extended_open: bool,
    pub shared: SharedRef,
    /// How the client's text is decoded for classification.
    encoding: SessionEncoding,
}

impl Gate {
    pub fn new(
        policy: std::sync::Arc<SqlPolicy>,
        shared: SharedRef,
        encoding: SessionEncoding,
    ) -> Self {
        Gate {
            masking: policy.masker.is_some(),
            extended_open: false,
            tracker: PolicyTracker::new(policy),
            nonce: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            counter: 0,
            shared,
            encoding,
        }
    }

    /// SQL text as the classifier reads it. Bytes that do not decode in
    /// the client encoding become U+FFFD, never a quote or a backslash, so
    /// the text lexes as the target's would; under any encoding but UTF-8
    /// the tracker treats every statement as unreadable anyway
    /// ([`crate::policy::tracker::lexing_hazard`]).
    fn sql<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, str> {
        self.encoding.get().decode_lossy(bytes)
    }

    /// Judge one client frame (already length-checked and recorded).
    pub fn check(&mut self, tag: u8, body: &[u8]) -> Result<Step, CodecError> {
        let (settings, results) = {
            let mut shared = self.shared.borrow_mut();
            if shared.units.len() > MAX_UNANSWERED || shared.open.describes.len() > MAX_UNANSWERED {
                return Err(CodecError::Malformed(
                    "pipeline: too many unanswered messages for",
                ));
            }
            (
                std::mem::take(&mut shared.settings),
                std::mem::take(&mut shared.unit_results),
            )
        };
        for (name, value) in settings {
            self.tracker.setting(&name, &value);
        }
        for errored in results {
            self.tracker.unit_done(errored);
        }
        // A Query or FunctionCall inside an unfinished extended pipeline is
        // skipped by the target if that pipeline failed, and then answered
        // by no ReadyForQuery: no client does this, and allowing it would
        // put the gateway's view of the answers out of step.
        if matches!(tag, b'Q' | b'F') && self.extended_open {
            return Err(CodecError::Malformed(
                "Query inside an unfinished extended-protocol pipeline: a",
            ));
        }
        if matches!(tag, b'P' | b'B' | b'E' | b'D' | b'C') {
            self.extended_open = true;
        }
        let mut executes = None;
        let (decision, mentioned, parse_of) = match tag {
            b'Q' => {
                let sql = self.sql(messages::query(body)?);
                self.tracker.own_unit();
                let (d, m) = self.tracker.query(&sql);
                let copies = if self.masking {
                    copy_sources(&sql).into()
                } else {
                    VecDeque::new()
                };
                // One ReadyForQuery answers this message.
                self.shared.borrow_mut().units.push_back(Unit {
                    query: true,
                    mentioned: m.unwrap_or_default(),
                    copies,
                    describes: VecDeque::new(),
                });
                (d, None, None)
            }
            b'P' => {
                let p = messages::parse(body)?;
                let (d, m) = self
                    .tracker
                    .parse(&name_key(p.statement), &self.sql(p.query));
                (d, m, Some(p.statement.to_vec()))
            }
            b'B' => {
                let b = messages::bind(body)?;
                let decision = self
                    .tracker
                    .bind(&name_key(b.portal), &name_key(b.statement));
                (decision, None, None)
            }
            b'D' => {
                if self.masking {
                    messages::describe(body)?;
                    self.shared.borrow_mut().open.describes.push_back(false);
                }
                return Ok(Step::Forward);
            }
            b'E' => {
                let (portal, _) = messages::execute(body)?;
                let (d, m) = self.tracker.execute(&name_key(portal));
                executes = Some(portal.to_vec());
                (d, m, None)
            }
            b'C' => {
                let (what, name) = messages::close(body)?;
                self.tracker.close(what, &name_key(name));
                return Ok(Step::Forward);
            }
            b'S' => {
                self.tracker.sync();
                self.extended_open = false;
                let mut shared = self.shared.borrow_mut();
                let unit = std::mem::take(&mut shared.open);
                shared.units.push_back(unit);
                return Ok(Step::Forward);
            }
            b'F' => {
                self.tracker.own_unit();
                self.shared.borrow_mut().units.push_back(Unit::default());
                (self.tracker.function_call(), None, None)
            }
            _ => return Ok(Step::Forward),
        };
        if let Some(m) = mentioned {
            self.shared.borrow_mut().open.mentioned.extend(m);
        }
        Ok(match decision {
            Decision::Forward => Step::Forward,
            Decision::Refuse { rule, message } => {
                let client_message = format!("blocked by policy rule \"{rule}\": {message}");
                let bytes =
                    self.substitute(tag, parse_of.as_deref(), BLOCKED, client_message.clone());
                Step::Replace(
                    bytes,
                    Refusal {
                        rule,
                        message: client_message,
                    },
                )
            }
            Decision::Hold {
                rule,
                timeout,
                approvers,
                sql,
            } => Step::Hold(Held {
                rule,
                timeout,
                approvers,
                sql,
                parse_of: if tag == b'P' { parse_of } else { None },
                portal: executes,
                tag,
            }),
        })
    }

    /// Masking needs each result's columns with their real formats, but
    /// drivers re-executing a prepared statement skip Describe (JDBC after
    /// `prepareThreshold`, or Describe of the statement before a Bind that
    /// asks for binary), and a client may describe several portals before
    /// executing them in another order. Every Execute therefore gets a
    /// Describe of its portal sent just before it; the target pump uses the
    /// answer for that Execute's rows and does not relay it. Returns the
    /// bytes to send instead of the Execute.
    pub fn describe_before(&mut self, execute: &[u8]) -> Option<BytesMut> {
        if !self.masking {
            return None;
        }
        let (portal, _) = messages::execute(&execute[codec::HEADER_LEN..]).ok()?;
        let mut out = BytesMut::with_capacity(execute.len() + 16);
        codec::put_describe(&mut out, b'P', portal);
        out.extend_from_slice(execute);
        self.shared.borrow_mut().open.describes.push_back(true);
        Some(out)
    }

    /// An approved Execute's portal (as sent) may run on.
    pub fn approve_portal(&mut self, portal: &[u8]) {
        self.tracker.approve_portal(&name_key(portal));
    }

    /// An approved Parse (of the statement named as sent) may run once.
    pub fn grant(&mut self, statement: &[u8]) {
        self.tracker.grant(&name_key(statement));
    }

    /// A held Parse was denied or timed out.
    pub fn refused_parse(&mut self, statement: &[u8]) {
        self.tracker.refused_parse(&name_key(statement));
    }

    /// The message that makes the target answer `tag`'s message with an
    /// error the target pump turns into `(sqlstate, message)`. A refused
    /// Parse's stand-in keeps the statement name (`parse_of`), so a failed
    /// unnamed Parse drops the previous unnamed statement exactly as
    /// PostgreSQL does.
    pub fn substitute(
        &mut self,
        tag: u8,
        parse_of: Option<&[u8]>,
        sqlstate: &'static str,
        message: String,
    ) -> BytesMut {
        self.counter += 1;
        let token = format!("gatehouse_refused_{}_{}", self.nonce, self.counter);
        let mut out = BytesMut::new();
        match (tag, parse_of) {
            // Extended protocol: a Parse that fails; the target then skips
            // to Sync as after any error. A failed Parse creates nothing.
            (b'P', Some(name)) => codec::put_parse(&mut out, name, &token),
            // An Execute's stand-in uses a name of our own, disturbing no
            // client statement.
            (b'P' | b'B' | b'E' | b'D' | b'C', _) => {
                codec::put_parse(&mut out, format!("{token}_s").as_bytes(), &token)
            }
            // Query and FunctionCall: answered by an error and ReadyForQuery.
            _ => codec::put_query(&mut out, &token),
        }
        let mut shared = self.shared.borrow_mut();
        if shared.order.len() >= MAX_PENDING_REWRITES
            && let Some(old) = shared.order.pop_front()
        {
            shared.rewrites.remove(&old);
        }
        shared.order.push_back(token.clone());
        shared.rewrites.insert(token, (sqlstate, message));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_are_found_by_token_once() {
        let shared: SharedRef = Default::default();
        let mut gate = Gate::new(
            std::sync::Arc::new(SqlPolicy::allow_all("p")),
            shared.clone(),
            Default::default(),
        );
        let frame = gate.substitute(b'Q', None, BLOCKED, "no".into());
        let sql = String::from_utf8(messages::query(&frame[5..]).unwrap().to_vec()).unwrap();
        assert!(sql.starts_with("gatehouse_refused_"));
        let target_says = format!("syntax error at or near \"{sql}\"");
        assert_eq!(
            shared.borrow_mut().take_rewrite(&target_says),
            Some((BLOCKED, "no".into()))
        );
        assert_eq!(shared.borrow_mut().take_rewrite(&target_says), None);
        assert_eq!(
            shared
                .borrow_mut()
                .take_rewrite("syntax error at or near \"gatehouse_refused_x_1\""),
            None
        );
    }

    /// The shortcut agrees with the set it stands for, whichever side of
    /// the pipeline holds columns.
    #[test]
    fn mentioned_is_compares_with_what_mentioned_builds() {
        let set = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Mentioned>();
        let unit = |c: &[&str]| Unit {
            mentioned: set(c),
            ..Unit::default()
        };
        let mut shared = Shared::default();
        let cases = [
            (None, &[][..]),
            (None, &["a"][..]),
            (Some(&["a", "b"][..]), &[][..]),
            (Some(&["a"][..]), &["b"][..]),
            (Some(&[][..]), &["b"][..]),
        ];
        for (front, open) in cases {
            shared.units = front.map(unit).into_iter().collect();
            shared.open = unit(open);
            let built = shared.mentioned();
            assert!(shared.mentioned_is(&built), "{front:?} {open:?}");
            for other in [set(&[]), set(&["a"]), set(&["a", "b"]), set(&["b"])] {
                assert_eq!(
                    shared.mentioned_is(&other),
                    other == built,
                    "{front:?} {open:?}"
                );
            }
        }
    }
}
