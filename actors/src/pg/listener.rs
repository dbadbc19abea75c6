//! The PostgreSQL listener: accepts connections, enforces the session
//! limit, and hands each socket to a `PgSession` on one of the worker
//! arbiters.

use std::sync::Arc;

use actix::prelude::*;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::session::{Admission, PgSession};
use crate::gateway::Gateway;

/// Over-limit connections still get a proper 53300 after their startup
/// message; this many may be in that state at once, beyond which sockets are
/// closed at once so the refusal path cannot itself be used to flood.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

pub struct PgListener {
    pub gw: Arc<Gateway>,
    /// Session actors are spread over these, one per core.
    pub workers: Vec<ArbiterHandle>,
}

impl PgListener {
    /// Accept until `shutdown` turns true.
    pub async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let sessions = Arc::new(Semaphore::new(self.gw.limits.max_sessions));
        let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
        let mut next = 0usize;
        loop {
            let (socket, peer) = tokio::select! {
                _ = shutdown.changed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of
                        // spinning, and keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let admission = match sessions.clone().try_acquire_owned() {
                Ok(permit) => Admission::Admitted(permit),
                Err(_) => match refusals.clone().try_acquire_owned() {
                    Ok(permit) => Admission::OverLimit(permit),
                    Err(_) => {
                        tracing::warn!(%peer, "session limit reached; connection closed");
                        continue;
                    }
                },
            };
            let _ = socket.set_nodelay(true);
            super::stream::keepalive(&socket);
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
                match tokio::net::TcpStream::from_std(std_socket) {
                    Ok(socket) => {
                        PgSession::new(gw, socket, peer, admission).start();
                    }
                    Err(e) => tracing::warn!(%peer, "could not adopt connection: {e}"),
                }
            });
        }
    }
}
