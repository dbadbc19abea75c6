//! The accept loop every protocol shares: the session limit, the refusal
//! slots for clients over it, socket options, and the hand-over of each
//! connection to a session actor on one of the worker arbiters.
//!
//! A protocol plugs in through [`Protocol`], the one small trait PostgreSQL
//! and SSH implement:
//!
//! ```text
//! Listener<P>::run ── accept ─▶ Admissions::admit ─▶ P::start(gw, socket, peer, admission)
//!                                 │ Admitted: a session slot (limits.max_sessions, all protocols)
//!                                 │ OverLimit: a refusal slot; P tells the client in its protocol
//!                                 └ neither: closed at once (logged)
//! ```

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::gateway::Gateway;

/// Over-limit connections still get a proper refusal in their own protocol
/// (PostgreSQL 53300, an SSH disconnect message); this many may be in that
/// state at once, beyond which sockets are closed at once so the refusal
/// path cannot itself be used to flood.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// Whether a connection got a session slot.
pub enum Admission {
    Admitted(OwnedSemaphorePermit),
    /// Over the session limit: the client is told so in its own protocol,
    /// holding a refusal slot.
    OverLimit(OwnedSemaphorePermit),
}

impl Admission {
    pub fn over_limit(&self) -> bool {
        matches!(self, Admission::OverLimit(_))
    }
}

/// The session slots of the whole gateway: `limits.max_sessions` counts
/// PostgreSQL and SSH sessions together.
pub struct Admissions {
    sessions: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
}

impl Admissions {
    pub fn new(max_sessions: usize) -> Self {
        Admissions {
            sessions: Arc::new(Semaphore::new(max_sessions)),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
        }
    }

    /// A slot for a new connection; `None` when even the refusal slots are
    /// taken (the caller closes the socket).
    pub fn admit(&self) -> Option<Admission> {
        match self.sessions.clone().try_acquire_owned() {
            Ok(permit) => Some(Admission::Admitted(permit)),
            Err(_) => self
                .refusals
                .clone()
                .try_acquire_owned()
                .ok()
                .map(Admission::OverLimit),
        }
    }
}

/// A protocol the gateway serves.
///
/// `start` runs on the worker arbiter that will own the session and must
/// not fail: everything that can go wrong from here on (bad input, a bad
/// token, a dead target, a panic) is the session's to report to its client
/// in the protocol's own terms, log, and record as the session's end.
pub trait Protocol: 'static {
    /// The protocol's name in logs, the registry and recording headers.
    const NAME: &'static str;

    /// Start the session actor for one accepted connection.
    fn start(gw: Arc<Gateway>, socket: TcpStream, peer: SocketAddr, admission: Admission);
}

/// Accepts connections for protocol `P` until shutdown.
pub struct Listener<P> {
    pub gw: Arc<Gateway>,
    /// Session actors are spread over these, one per core.
    pub workers: Vec<ArbiterHandle>,
    protocol: PhantomData<P>,
}

impl<P: Protocol> Listener<P> {
    pub fn new(gw: Arc<Gateway>, workers: Vec<ArbiterHandle>) -> Self {
        Listener {
            gw,
            workers,
            protocol: PhantomData,
        }
    }

    /// Accept until `shutdown` turns true.
    pub async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let mut next = 0usize;
        loop {
            let (socket, peer) = tokio::select! {
                _ = shutdown.changed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of
                        // spinning, and keep serving.
                        tracing::warn!(protocol = P::NAME, "accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(admission) = self.gw.admissions.admit() else {
                tracing::warn!(%peer, protocol = P::NAME, "session limit reached; connection closed");
                continue;
            };
            let _ = socket.set_nodelay(true);
            crate::pg::stream::keepalive(&socket);
            // Re-register the socket with the worker's own reactor so its
            // I/O never hops through this thread.
            let std_socket = match socket.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, "could not hand over connection: {e}");
                    continue;
                }
            };
            let gw = self.gw.clone();
            let worker = &self.workers[next % self.workers.len()];
            next = next.wrapping_add(1);
            worker.spawn(async move {
                match TcpStream::from_std(std_socket) {
                    Ok(socket) => P::start(gw, socket, peer, admission),
                    Err(e) => tracing::warn!(%peer, "could not adopt connection: {e}"),
                }
            });
        }
    }
}
