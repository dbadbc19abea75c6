//! SQL policy: what a session may run, what waits for an operator, and
//! what is masked on the way out.
//!
//! Phases, in the order the relay calls them for each client message:
//!
//! ```text
//! statement filter                         result filter
//! classify ─▶ rules ─▶ decide ──────────▶  mask ─▶ record
//! sqlparser   first    allow: forward      rows, COPY data, error and
//! walks the   match    block: 42501        notice texts; only masked
//! whole tree  wins     approve: hold,      values reach the client and
//!                      ApprovalBroker      the recording
//! ```
//!
//! Layout:
//! - [`classify`] statement kinds, tables, functions and columns from the
//!   parsed tree (conservative: when in doubt, more, never fewer).
//! - [`shape`] statements that differ only in integer operands are
//!   classified once (per worker thread).
//! - [`memo`] what a session already allowed, by shape: judged once.
//! - [`rules`] rules, name patterns and what matches.
//! - [`tracker`] per-session state: prepared statements and portals, so an
//!   `EXECUTE p` or a Bind/Execute is judged by what `p` does.

pub mod classify;
pub mod copy_source;
pub mod memo;
pub mod rules;
pub mod shape;
pub mod tracker;

use std::time::Duration;

pub use classify::{StatementInfo, Unparsed};
pub(crate) use rules::glob;
pub use rules::{Action, NamePattern, Rule};
pub use tracker::PolicyTracker;

use crate::mask::Masker;

/// What happens to SQL the parser cannot read (or code it cannot see into,
/// such as dynamic SQL in a DO block) under a policy that restricts
/// anything. Default: block — an unreadable statement cannot be shown not
/// to match a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    Block,
    Allow,
}

/// One `[policies.NAME]` as the sessions use it.
#[derive(Debug)]
pub struct SqlPolicy {
    pub name: String,
    pub rules: Vec<Rule>,
    /// Action when no rule matches.
    pub default_block: bool,
    pub unparsed: Unreadable,
    /// Lives as long as the process: policies are loaded once at start.
    pub masker: Option<&'static Masker>,
}

impl SqlPolicy {
    /// A policy that lets everything through and masks nothing.
    pub fn allow_all(name: &str) -> Self {
        SqlPolicy {
            name: name.to_owned(),
            rules: Vec::new(),
            default_block: false,
            unparsed: Unreadable::Block,
            masker: None,
        }
    }

    /// Whether statements need classifying at all: with no restricting rule
    /// and no blocking default, every statement is forwarded unparsed.
    pub fn enforcing(&self) -> bool {
        self.default_block || self.rules.iter().any(Rule::restricts)
    }

    /// The verdict for one classified statement.
    pub fn judge(&self, info: &StatementInfo) -> Verdict {
        if let Some(why) = &info.opaque {
            return self.unreadable(why);
        }
        for rule in &self.rules {
            if rule.matches(info) {
                return rule.action.verdict(&rule.name, "statement not allowed");
            }
        }
        if self.default_block {
            Verdict::Block {
                rule: "default".into(),
                message: "no rule allows this statement".into(),
            }
        } else {
            Verdict::Allow
        }
    }

    /// The verdict for SQL that did not parse, or code that cannot be read.
    /// The parser's reason may quote the statement (`found: '…'`): it is
    /// masked here, so the client's error, the recording and the log all
    /// get the masked text.
    pub fn unreadable(&self, why: &str) -> Verdict {
        if self.unparsed == Unreadable::Block && self.enforcing() {
            let masked = self
                .masker
                .and_then(|m| m.mask_refusal(why, &mut Default::default()));
            let why = masked.as_deref().unwrap_or(why);
            Verdict::Block {
                rule: "unparsed".into(),
                message: format!("statement could not be analysed ({why})"),
            }
        } else {
            Verdict::Allow
        }
    }
}

/// The approver list of a request nobody may approve.
pub const NOBODY: &str = "<nobody>";

/// What policy says about a statement (or a message of several).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    Block {
        rule: String,
        message: String,
    },
    Approve {
        rule: String,
        timeout: Duration,
        approvers: Vec<String>,
    },
}

impl Verdict {
    /// Combine the verdicts of a multi-statement message: one blocked
    /// statement refuses the whole message (the target sees none of it);
    /// otherwise one held statement holds it all.
    pub fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (b @ Verdict::Block { .. }, _) | (_, b @ Verdict::Block { .. }) => b,
            (
                Verdict::Approve {
                    rule,
                    timeout,
                    approvers,
                },
                Verdict::Approve {
                    timeout: t2,
                    approvers: a2,
                    ..
                },
            ) => Verdict::Approve {
                rule,
                timeout: timeout.min(t2),
                // Whoever may approve both parts.
                approvers: if approvers.is_empty() {
                    a2
                } else if a2.is_empty() {
                    approvers
                } else {
                    let both: Vec<String> =
                        approvers.into_iter().filter(|a| a2.contains(a)).collect();
                    if both.is_empty() {
                        // Nobody may approve both parts: a name no operator
                        // can have, so the request can only time out.
                        vec![NOBODY.to_owned()]
                    } else {
                        both
                    }
                },
            },
            (a @ Verdict::Approve { .. }, Verdict::Allow)
            | (Verdict::Allow, a @ Verdict::Approve { .. }) => a,
            (Verdict::Allow, Verdict::Allow) => Verdict::Allow,
        }
    }
}
