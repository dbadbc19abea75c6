//! `SshSession`: one actor per agent SSH connection.
//!
//! ```text
//! handshake ─▶ login ─▶ authorize ─▶ connect target ─▶ channels relayed ─▶ closed
//!  (version,    (certificate  (identity →   (pinned host key,  (one relay per
//!   key          or token as   roles →       held credential)   channel)
//!   exchange)    password)     connection)
//! ```
//!
//! The version exchange must arrive within `limits.startup_timeout` and the
//! login complete within it too, or the connection is dropped (a stalled
//! handshake holds nothing). Like `PgSession`, the actor's inbox takes
//! [`Kill`]; the registry and the shutdown path hold only its address. A
//! kill tells every channel why on its stderr, then disconnects with the
//! reason. Every way the session ends is logged and recorded; a panic is
//! caught and recorded as `failed`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::SshService;
use super::handler::{Note, ServerHandler};
use crate::error::SessionError;
use crate::gateway::Gateway;
use crate::lifecycle::{self, SessionRecord, capped};
use crate::listener::Admission;
use crate::recorder::now_micros;
use crate::recording::{Direction, EventKind, Outcome, RecordingId};
use crate::registry::{Kill, SessionState, SessionStats, Unregister, Update};

/// After a kill, how long the channels get to tell the agent before the
/// connection is cut.
const KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub struct SshSession {
    id: RecordingId,
    gw: Arc<Gateway>,
    socket: Option<TcpStream>,
    peer: SocketAddr,
    started_at: i64,
    /// Held for the session's life; released when the actor drops.
    admission: Admission,
    stop: Rc<watch::Sender<Option<String>>>,
    /// Live counters for consoles.
    stats: Arc<SessionStats>,
}

impl SshSession {
    pub fn new(
        gw: Arc<Gateway>,
        socket: TcpStream,
        peer: SocketAddr,
        admission: Admission,
    ) -> Self {
        SshSession {
            id: RecordingId::new(),
            gw,
            socket: Some(socket),
            peer,
            started_at: now_micros(),
            admission,
            stop: Rc::new(watch::channel(None).0),
            stats: Arc::default(),
        }
    }
}

impl Actor for SshSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let record = SessionRecord::new(
            self.gw.recorder.clone(),
            self.id,
            "ssh",
            self.started_at,
            self.peer.to_string(),
            self.stats.clone(),
        );
        lifecycle::register(&self.gw.registry, &record, "ssh", ctx.address().recipient());
        let (Some(socket), Some(svc)) = (self.socket.take(), self.gw.ssh.clone()) else {
            ctx.stop();
            return;
        };
        let panic_end = record.panic_end();
        let life = Lifecycle {
            gw: self.gw.clone(),
            svc,
            peer: self.peer,
            over_limit: self.admission.over_limit(),
            record,
            stop: self.stop.subscribe(),
            stats: self.stats.clone(),
        };
        let span = tracing::info_span!("ssh_session", id = %self.id, peer = %self.peer);
        lifecycle::spawn_life(self, ctx, life.run(socket), span, panic_end);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.gw.registry.do_send(Unregister(self.id));
    }
}

impl Handler<Kill> for SshSession {
    type Result = ();

    fn handle(&mut self, msg: Kill, _: &mut Self::Context) {
        self.stop.send_replace(Some(msg.message()));
    }
}

/// The session's life as one future, owned by the actor's context.
struct Lifecycle {
    gw: Arc<Gateway>,
    svc: Arc<SshService>,
    peer: SocketAddr,
    over_limit: bool,
    record: SessionRecord,
    stop: watch::Receiver<Option<String>>,
    stats: Arc<SessionStats>,
}

impl Lifecycle {
    async fn run(mut self, socket: TcpStream) {
        let limits = self.gw.limits.clone();
        let deadline = tokio::time::Instant::now() + limits.startup_timeout;
        let (notes_tx, mut notes) = mpsc::unbounded_channel();
        let (terminate_tx, terminate_rx) = watch::channel(None);
        let handler = ServerHandler::new(
            self.gw.clone(),
            self.svc.clone(),
            self.peer,
            self.record.id(),
            self.over_limit,
            notes_tx,
            terminate_rx,
            self.stats.clone(),
        );
        let started = tokio::time::timeout_at(
            deadline,
            russh::server::run_stream(self.svc.config.clone(), socket, handler),
        )
        .await;
        let running = match started {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                // Garbage instead of an SSH version line, or the socket
                // closed: a probe when nothing was sent.
                let e = SessionError::ClientUnsupported(match e {
                    russh::Error::Disconnect => "the connection closed before the SSH handshake",
                    _ => "not an SSH client (no SSH version line)",
                });
                return self.end(Some(e)).await;
            }
            Err(_) => {
                return self
                    .end(Some(SessionError::StartupTimeout(limits.startup_timeout)))
                    .await;
            }
        };
        let handle = running.handle();
        tokio::pin!(running);
        let mut logged_in = false;
        let mut failure: Option<SessionError> = None;
        let login_deadline = tokio::time::sleep_until(deadline);
        tokio::pin!(login_deadline);
        loop {
            tokio::select! {
                ended = &mut running => {
                    if let Err(e) = ended {
                        tracing::debug!("SSH connection ended: {e}");
                        if failure.is_none() && !logged_in {
                            failure = Some(SessionError::ClientUnsupported(
                                "the SSH handshake or login failed",
                            ));
                        }
                    }
                    break;
                }
                Some(note) = notes.recv() => {
                    self.apply(note, &handle, &mut failure, &mut logged_in).await;
                }
                _ = &mut login_deadline, if !logged_in => {
                    let e = SessionError::StartupTimeout(limits.startup_timeout);
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, e.client_message(), "en".into())
                        .await;
                    // A refusal already seen explains the session better.
                    failure.get_or_insert(e);
                    // The connection may not go away by itself if the peer
                    // never reads; give it a moment, then drop it.
                    let _ = tokio::time::timeout(KILL_GRACE, &mut running).await;
                    break;
                }
                changed = self.stop.changed() => {
                    let why = match changed {
                        Ok(()) => self.stop.borrow().clone().unwrap_or_default(),
                        Err(_) => "the session was dropped".into(),
                    };
                    tracing::info!("terminating: {why}");
                    terminate_tx.send_replace(Some(why.clone()));
                    let e = SessionError::Terminated(why);
                    // Channels tell the agent first; then the connection.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    let _ = tokio::time::timeout(
                        KILL_GRACE,
                        handle.disconnect(russh::Disconnect::ByApplication, e.client_message(), "en".into()),
                    )
                    .await;
                    let _ = tokio::time::timeout(KILL_GRACE, &mut running).await;
                    failure = Some(e);
                    break;
                }
            }
        }
        // What the handler said just before the connection ended (a target
        // that could not be reached, say) explains the end.
        while let Ok(note) = notes.try_recv() {
            self.apply(note, &handle, &mut failure, &mut logged_in)
                .await;
        }
        // Stop every relay still running (the connection is gone).
        terminate_tx.send_replace(Some("the connection ended".into()));
        self.end(failure).await;
    }

    /// Take in what the handler tells the session.
    async fn apply(
        &mut self,
        note: Note,
        handle: &russh::server::Handle,
        failure: &mut Option<SessionError>,
        logged_in: &mut bool,
    ) {
        match note {
            Note::Claimed(user) => {
                self.record.header.client_user = Some(capped(&user));
                self.record.header.connection = Some(capped(&user));
                self.record.send_header().await;
            }
            Note::Identified(identity) => {
                self.record.header.identify(&identity);
                self.record.send_header().await;
                self.gw.registry.do_send(Update {
                    id: self.record.id(),
                    identity: Some(identity.qualified()),
                    connection: self.record.header.connection.clone(),
                });
            }
            Note::Granted(grant) => {
                self.record.header.granted(&grant);
                self.record.send_header().await;
            }
            Note::Refused(e) | Note::Ended(e) => *failure = Some(e),
            Note::Established { target } => {
                *logged_in = true;
                *failure = None;
                self.stats.set_state(SessionState::Active);
                self.record
                    .event(Direction::Gateway, EventKind::Connected { target })
                    .await;
            }
            Note::Fatal(e) => {
                tracing::warn!("ending the connection: {e}");
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        e.client_message(),
                        "en".into(),
                    )
                    .await;
                *failure = Some(e);
            }
        }
    }

    async fn end(self, failure: Option<SessionError>) {
        let (outcome, reason) = match &failure {
            None => {
                tracing::info!("session closed");
                (Outcome::Closed, None)
            }
            Some(e) => {
                tracing::warn!(side = ?e.side(), "session ended: {e}");
                (e.outcome(), Some(e.to_string()))
            }
        };
        self.record.end(outcome, reason).await;
    }
}
