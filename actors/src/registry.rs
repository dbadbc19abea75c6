//! The Registry: every live session, and the one place to end them.
//!
//! Sessions register when they start and leave when they stop. Consoles and
//! the shutdown path ask it for the list or to kill sessions; it forwards a
//! [`Kill`] to the session's own inbox and never touches its sockets.
//!
//! Consoles subscribe ([`Subscribe`]) and get a snapshot — live sessions
//! and the last [`RECENT`] that ended — then every start, change and end
//! through a bounded [`Feed`]: a console that falls behind loses updates
//! (counted), never slows the registry. Each session's counters
//! ([`SessionStats`]) are shared atomics the console samples.
//!
//! Layout: this file holds the actor and its messages; `stats` the
//! per-session counters and state.

mod stats;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

pub use stats::{SessionState, SessionStats, StatsSnapshot};

use crate::feed::{Feed, publish};
use crate::recorder::now_micros;
use crate::recording::RecordingId;

/// Ended sessions kept for consoles' "recent" rows: enough to fill a
/// screen or two; older ones are in the recordings.
pub const RECENT: usize = 100;

/// Ask a session to end. It tells its client why (57P01) and records it,
/// naming `by` (the operator) when an operator asked.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Kill {
    pub reason: String,
    pub by: Option<String>,
}

impl Kill {
    /// What the client and the recording are told.
    pub fn message(&self) -> String {
        match &self.by {
            Some(by) => format!("{} by {by}", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// What the registry knows of a live session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: RecordingId,
    pub protocol: &'static str,
    pub client_addr: String,
    pub started_at: i64,
    pub identity: Option<String>,
    pub connection: Option<String>,
    /// Shared with the session, which updates them as it relays.
    pub stats: Arc<SessionStats>,
}

/// A session as a console sees it: who, where, and its counters at the
/// moment of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub id: RecordingId,
    pub protocol: String,
    pub client_addr: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub stats: StatsSnapshot,
}

impl SessionInfo {
    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            id: self.id,
            protocol: self.protocol.to_owned(),
            client_addr: self.client_addr.clone(),
            started_at: self.started_at,
            ended_at: None,
            identity: self.identity.clone(),
            connection: self.connection.clone(),
            stats: self.stats.snapshot(),
        }
    }
}

/// What a console subscription carries after its snapshot.
#[derive(Debug, Clone)]
pub enum SessionUpdate {
    Started(SessionInfo),
    /// Identity or connection learned.
    Changed {
        id: RecordingId,
        identity: Option<String>,
        connection: Option<String>,
    },
    /// The session left the registry, with its final counters.
    Ended(SessionSummary),
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub info: SessionInfo,
    pub kill: Recipient<Kill>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Update {
    pub id: RecordingId,
    pub identity: Option<String>,
    pub connection: Option<String>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister(pub RecordingId);

#[derive(Message)]
#[rtype(result = "Vec<SessionInfo>")]
pub struct List;

/// Kill every live session; answers how many were asked.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct KillAll {
    pub reason: String,
}

/// Kill one live session on an operator's behalf.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct KillSession {
    pub id: RecordingId,
    pub by: String,
}

/// A console's subscription: answered with the live sessions and the
/// recently ended ones (newest last); updates follow on the feed.
#[derive(Message)]
#[rtype(result = "(Vec<SessionInfo>, Vec<SessionSummary>)")]
pub struct Subscribe(pub Feed<SessionUpdate>);

#[derive(Default)]
pub struct Registry {
    live: HashMap<RecordingId, (SessionInfo, Recipient<Kill>)>,
    recent: VecDeque<SessionSummary>,
    consoles: Vec<Feed<SessionUpdate>>,
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Register> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Register, _: &mut Self::Context) {
        if !self.consoles.is_empty() {
            publish(
                &mut self.consoles,
                &SessionUpdate::Started(msg.info.clone()),
            );
        }
        self.live.insert(msg.info.id, (msg.info, msg.kill));
    }
}

impl Handler<Update> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Update, _: &mut Self::Context) {
        if let Some((info, _)) = self.live.get_mut(&msg.id) {
            info.identity = msg.identity;
            info.connection = msg.connection;
            if !self.consoles.is_empty() {
                let changed = SessionUpdate::Changed {
                    id: msg.id,
                    identity: info.identity.clone(),
                    connection: info.connection.clone(),
                };
                publish(&mut self.consoles, &changed);
            }
        }
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Unregister, _: &mut Self::Context) {
        let Some((info, _)) = self.live.remove(&msg.0) else {
            return;
        };
        let mut ended = info.summary();
        ended.ended_at = Some(now_micros());
        if !self.consoles.is_empty() {
            publish(&mut self.consoles, &SessionUpdate::Ended(ended.clone()));
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(ended);
    }
}

impl Handler<List> for Registry {
    type Result = MessageResult<List>;
    fn handle(&mut self, _: List, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.live.values().map(|(i, _)| i.clone()).collect())
    }
}

impl Handler<KillAll> for Registry {
    type Result = usize;
    fn handle(&mut self, msg: KillAll, _: &mut Self::Context) -> usize {
        for (_, kill) in self.live.values() {
            kill.do_send(Kill {
                reason: msg.reason.clone(),
                by: None,
            });
        }
        self.live.len()
    }
}

impl Handler<KillSession> for Registry {
    type Result = Result<(), String>;
    fn handle(&mut self, msg: KillSession, _: &mut Self::Context) -> Self::Result {
        let (_, kill) = self
            .live
            .get(&msg.id)
            .ok_or_else(|| format!("session {} is not live", msg.id))?;
        tracing::info!(session = %msg.id, by = %msg.by, "session killed by an operator");
        kill.do_send(Kill {
            reason: "killed".into(),
            by: Some(msg.by),
        });
        Ok(())
    }
}

impl Handler<Subscribe> for Registry {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, Subscribe(feed): Subscribe, _: &mut Self::Context) -> Self::Result {
        self.consoles.retain(|f| !f.is_closed());
        self.consoles.push(feed);
        MessageResult((
            self.live.values().map(|(i, _)| i.clone()).collect(),
            self.recent.iter().cloned().collect(),
        ))
    }
}

/// The registry's address, as sessions and the appliance hold it.
pub type RegistryHandle = Addr<Registry>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::feed;
    use crate::recording::Outcome;

    struct Victim(tokio::sync::mpsc::UnboundedSender<Kill>);
    impl Actor for Victim {
        type Context = Context<Self>;
    }
    impl Handler<Kill> for Victim {
        type Result = ();
        fn handle(&mut self, msg: Kill, _: &mut Self::Context) {
            let _ = self.0.send(msg);
        }
    }

    fn info(stats: Arc<SessionStats>) -> SessionInfo {
        SessionInfo {
            id: RecordingId::new(),
            protocol: "postgres",
            client_addr: "127.0.0.1:1".into(),
            started_at: 1,
            identity: None,
            connection: Some("db".into()),
            stats,
        }
    }

    #[actix::test]
    async fn consoles_see_sessions_start_change_and_end_with_their_counters() {
        let registry = Registry::default().start();
        let (tx, mut rx) = feed(16);
        let (live, recent) = registry.send(Subscribe(tx)).await.unwrap();
        assert!(live.is_empty() && recent.is_empty());

        let (kills, mut killed) = tokio::sync::mpsc::unbounded_channel();
        let victim = Victim(kills).start();
        let stats = Arc::new(SessionStats::default());
        let session = info(stats.clone());
        let id = session.id;
        registry
            .send(Register {
                info: session,
                kill: victim.recipient(),
            })
            .await
            .unwrap();
        registry
            .send(Update {
                id,
                identity: Some("bot".into()),
                connection: Some("db".into()),
            })
            .await
            .unwrap();
        stats.add_statements(3);
        registry
            .send(KillSession {
                id,
                by: "alice (test)".into(),
            })
            .await
            .unwrap()
            .unwrap();
        let kill = killed.recv().await.unwrap();
        assert_eq!(kill.message(), "killed by alice (test)");
        stats.set_state(SessionState::Ended(Outcome::Terminated));
        registry.send(Unregister(id)).await.unwrap();
        assert!(
            registry
                .send(KillSession {
                    id,
                    by: "alice".into()
                })
                .await
                .unwrap()
                .is_err(),
            "an ended session cannot be killed"
        );

        assert!(matches!(rx.rx.recv().await, Some(SessionUpdate::Started(i)) if i.id == id));
        assert!(matches!(
            rx.rx.recv().await,
            Some(SessionUpdate::Changed { identity: Some(who), .. }) if who == "bot"
        ));
        let Some(SessionUpdate::Ended(ended)) = rx.rx.recv().await else {
            panic!("no end");
        };
        assert_eq!(ended.stats.statements, 3);
        assert_eq!(ended.stats.state, SessionState::Ended(Outcome::Terminated));
        assert!(ended.ended_at.is_some());

        let (tx, _rx) = feed(16);
        let (live, recent) = registry.send(Subscribe(tx)).await.unwrap();
        assert!(live.is_empty());
        assert_eq!(recent.len(), 1, "a late console still sees the recent end");
    }
}
