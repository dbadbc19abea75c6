//! The Registry: every live session, and the one place to end them.
//!
//! Sessions register when they start and leave when they stop. Consoles and
//! the shutdown path ask it for the list or to kill sessions; it forwards a
//! [`Kill`] to the session's own inbox and never touches its sockets.

use std::collections::HashMap;

use actix::prelude::*;

use crate::recording::RecordingId;

/// Ask a session to end. It tells its client why (57P01) and records it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Kill {
    pub reason: String,
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

#[derive(Default)]
pub struct Registry {
    live: HashMap<RecordingId, (SessionInfo, Recipient<Kill>)>,
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Register> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Register, _: &mut Self::Context) {
        self.live.insert(msg.info.id, (msg.info, msg.kill));
    }
}

impl Handler<Update> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Update, _: &mut Self::Context) {
        if let Some((info, _)) = self.live.get_mut(&msg.id) {
            info.identity = msg.identity;
            info.connection = msg.connection;
        }
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Unregister, _: &mut Self::Context) {
        self.live.remove(&msg.0);
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
            });
        }
        self.live.len()
    }
}

/// The registry's address, as sessions and the appliance hold it.
pub type RegistryHandle = Addr<Registry>;
