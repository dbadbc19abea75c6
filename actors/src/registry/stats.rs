//! Live statistics of one session, shared between the session and the
//! consoles watching it.
//!
//! The session updates them on its hot path, so each update is one relaxed
//! atomic operation per relayed batch — no lock, no message, no
//! allocation. Consoles read them (sampled, at most a few times a second)
//! through the registry; nothing a console does can make a session wait.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::recording::Outcome;

/// Where a session is in its life, as an operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// TLS, startup, token, connecting to the target.
    Starting,
    /// Relaying.
    Active,
    /// A statement or command is held for an operator.
    WaitingForApproval,
    /// Ended: how, as recorded.
    Ended(Outcome),
}

impl SessionState {
    pub fn label(self) -> &'static str {
        match self {
            SessionState::Starting => "starting",
            SessionState::Active => "active",
            SessionState::WaitingForApproval => "waiting",
            SessionState::Ended(o) => o.as_str(),
        }
    }

    pub fn is_live(self) -> bool {
        !matches!(self, SessionState::Ended(_))
    }

    fn encode(self) -> u8 {
        match self {
            SessionState::Starting => 0,
            SessionState::Active => 1,
            SessionState::WaitingForApproval => 2,
            SessionState::Ended(Outcome::Closed) => 3,
            SessionState::Ended(Outcome::Refused) => 4,
            SessionState::Ended(Outcome::Failed) => 5,
            SessionState::Ended(Outcome::Terminated) => 6,
            SessionState::Ended(Outcome::Interrupted) => 7,
        }
    }

    fn decode(v: u8) -> SessionState {
        match v {
            0 => SessionState::Starting,
            1 => SessionState::Active,
            2 => SessionState::WaitingForApproval,
            3 => SessionState::Ended(Outcome::Closed),
            4 => SessionState::Ended(Outcome::Refused),
            5 => SessionState::Ended(Outcome::Failed),
            6 => SessionState::Ended(Outcome::Terminated),
            _ => SessionState::Ended(Outcome::Interrupted),
        }
    }
}

/// Counters a session bumps as it relays.
#[derive(Debug)]
pub struct SessionStats {
    from_client: AtomicU64,
    to_client: AtomicU64,
    /// Statements (PostgreSQL: Query, Execute, FunctionCall) or commands
    /// (SSH: exec requests and interactive lines).
    statements: AtomicU64,
    state: AtomicU8,
}

impl Default for SessionStats {
    fn default() -> Self {
        SessionStats {
            from_client: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            statements: AtomicU64::new(0),
            state: AtomicU8::new(SessionState::Starting.encode()),
        }
    }
}

/// What the counters said at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub from_client: u64,
    pub to_client: u64,
    pub statements: u64,
    pub state: SessionState,
}

impl SessionStats {
    pub fn add_from_client(&self, bytes: usize) {
        self.from_client.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn add_to_client(&self, bytes: usize) {
        self.to_client.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn add_statements(&self, n: u64) {
        if n > 0 {
            self.statements.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Move to `state`. An ended session stays ended: a late update from a
    /// pump that is still unwinding cannot bring it back to life.
    pub fn set_state(&self, state: SessionState) {
        let new = state.encode();
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                SessionState::decode(old).is_live().then_some(new)
            });
    }

    pub fn state(&self) -> SessionState {
        SessionState::decode(self.state.load(Ordering::Relaxed))
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            from_client: self.from_client.load(Ordering::Relaxed),
            to_client: self.to_client.load(Ordering::Relaxed),
            statements: self.statements.load(Ordering::Relaxed),
            state: self.state(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_an_ended_session_stays_ended() {
        let s = SessionStats::default();
        assert_eq!(s.state(), SessionState::Starting);
        s.set_state(SessionState::Active);
        s.add_from_client(10);
        s.add_to_client(300);
        s.add_statements(2);
        s.set_state(SessionState::WaitingForApproval);
        assert_eq!(
            s.snapshot(),
            StatsSnapshot {
                from_client: 10,
                to_client: 300,
                statements: 2,
                state: SessionState::WaitingForApproval
            }
        );
        s.set_state(SessionState::Ended(Outcome::Terminated));
        s.set_state(SessionState::Active);
        assert_eq!(s.state(), SessionState::Ended(Outcome::Terminated));
        for state in [
            SessionState::Starting,
            SessionState::Active,
            SessionState::WaitingForApproval,
            SessionState::Ended(Outcome::Closed),
            SessionState::Ended(Outcome::Refused),
            SessionState::Ended(Outcome::Failed),
            SessionState::Ended(Outcome::Terminated),
            SessionState::Ended(Outcome::Interrupted),
        ] {
            assert_eq!(SessionState::decode(state.encode()), state);
        }
    }
}
