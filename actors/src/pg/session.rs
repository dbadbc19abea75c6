//! `PgSession`: one actor per PostgreSQL connection.
//!
//! ```text
//! startup ─▶ authenticate ─▶ authorize ─▶ connect upstream ─▶ relay ─▶ closed
//!  (TLS,       (token in       (identity →     (held            (two pumps,
//!   startup     cleartext       roles →         credential,      recording
//!   message)    password)       connection)     TLS mode)        taps)
//! ```
//!
//! Every step before relaying runs under the startup deadline. Any failure
//! becomes a FATAL ErrorResponse in the client's protocol (see
//! [`SessionError`]), a log line with the full reason, and a recorded end.
//! The actor's inbox takes [`Kill`]; the registry and shutdown path hold
//! only its address. A panic inside the session is caught and recorded as
//! `failed`; it never reaches other sessions.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tracing::Instrument;

use super::cancel::{self, CancelTarget};
use super::codec;
use super::relay::{PolicyCtx, Relay, RelayEnd, Stop};
use super::startup::{self, ClientStartup, Hello};
use super::upstream::{self, Upstream};
use crate::error::SessionError;
use crate::gateway::Gateway;
use crate::recorder::{PendingEvent, RecorderMsg, now_micros};
use crate::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};
use crate::registry::{Kill, Register, SessionInfo, Unregister, Update};

/// Whether a connection got a session slot.
pub enum Admission {
    Admitted(OwnedSemaphorePermit),
    /// Over the session limit: the client is told so (53300) after its
    /// startup message, in its own protocol, holding a refusal slot.
    OverLimit(OwnedSemaphorePermit),
}

/// Longest client-claimed name recorded in a session header.
const MAX_HEADER_NAME: usize = 256;

pub struct PgSession {
    id: RecordingId,
    gw: Arc<Gateway>,
    socket: Option<TcpStream>,
    peer: SocketAddr,
    started_at: i64,
    /// Held for the session's life; released when the actor drops.
    admission: Admission,
    stop: Rc<watch::Sender<Option<Stop>>>,
}

impl PgSession {
    pub fn new(
        gw: Arc<Gateway>,
        socket: TcpStream,
        peer: SocketAddr,
        admission: Admission,
    ) -> Self {
        PgSession {
            id: RecordingId::new(),
            gw,
            socket: Some(socket),
            peer,
            started_at: now_micros(),
            admission,
            stop: Rc::new(watch::channel(None).0),
        }
    }
}

impl Actor for PgSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.gw.registry.do_send(Register {
            info: SessionInfo {
                id: self.id,
                protocol: "postgres",
                client_addr: self.peer.to_string(),
                started_at: self.started_at,
                identity: None,
                connection: None,
            },
            kill: ctx.address().recipient(),
        });
        let Some(socket) = self.socket.take() else {
            ctx.stop();
            return;
        };
        let life = Lifecycle {
            gw: self.gw.clone(),
            header: SessionHeader {
                id: self.id,
                protocol: "postgres".into(),
                started_at: self.started_at,
                ended_at: None,
                client_addr: self.peer.to_string(),
                client_user: None,
                connection: None,
                identity: None,
                groups: Vec::new(),
                outcome: None,
                reason: None,
                event_count: 0,
            },
            header_sent: false,
            over_limit: matches!(self.admission, Admission::OverLimit(_)),
            stop: self.stop.clone(),
        };
        let span = tracing::info_span!("session", id = %self.id, peer = %self.peer,
            identity = tracing::field::Empty, connection = tracing::field::Empty);
        let fut = AssertUnwindSafe(life.run(socket).instrument(span.clone())).catch_unwind();
        let id = self.id;
        let recorder = self.gw.recorder.clone();
        ctx.spawn(fut.into_actor(self).map(move |result, _, ctx| {
            if result.is_err() {
                let _span = span.enter();
                tracing::error!("session panicked; ended as failed");
                recorder.send_now(RecorderMsg::Close {
                    id,
                    outcome: Outcome::Failed,
                    reason: Some("internal error: session panicked".into()),
                    at: now_micros(),
                });
            }
            ctx.stop();
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.gw.registry.do_send(Unregister(self.id));
    }
}

impl Handler<Kill> for PgSession {
    type Result = ();

    fn handle(&mut self, msg: Kill, _: &mut Self::Context) {
        self.stop.send_replace(Some(Stop::Terminated(msg.reason)));
    }
}

/// The session's life as one future, owned by the actor's context.
struct Lifecycle {
    gw: Arc<Gateway>,
    header: SessionHeader,
    header_sent: bool,
    over_limit: bool,
    stop: Rc<watch::Sender<Option<Stop>>>,
}

/// A session that reached its target and is ready to relay.
struct Established {
    strict: bool,
    policy: Option<PolicyCtx>,
    upstream: Upstream,
    cancel_key: (i32, i32),
    connection: String,
}

impl Lifecycle {
    async fn run(mut self, socket: TcpStream) {
        let limits = self.gw.limits.clone();
        let deadline = tokio::time::Instant::now() + limits.startup_timeout;
        let mut stop_rx = self.stop.subscribe();

        let accepted = tokio::select! {
            r = tokio::time::timeout_at(deadline,
                startup::accept(socket, self.gw.tls.as_ref())) => match r {
                Ok(r) => r,
                Err(_) => Err(SessionError::StartupTimeout(limits.startup_timeout)),
            },
            _ = stop_rx.changed() => Err(SessionError::Terminated("gateway shutting down".into())),
        };
        let mut client = match accepted {
            Ok(Hello::Startup(client)) => client,
            Ok(Hello::Cancel {
                process_id,
                secret_key,
            }) => return self.cancel((process_id, secret_key)).await,
            Err(SessionError::ClientIo(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // A port probe or health check: nothing was asked, nothing
                // to record.
                tracing::debug!("connection closed before startup");
                return;
            }
            Err(e) => return self.end_with(Err(e)).await,
        };

        // Unauthenticated input: kept short in the header (a longer name
        // cannot match a configured connection anyway).
        self.header.client_user = client
            .param("user")
            .map(|u| super::tap::capped(u, MAX_HEADER_NAME));
        // PostgreSQL's own default: the database is named like the user.
        self.header.connection = client
            .param("database")
            .or(client.param("user"))
            .map(|c| super::tap::capped(c, MAX_HEADER_NAME));
        self.send_header().await;
        if !client.stream.is_tls() && !self.gw.allow_plaintext {
            let e = SessionError::PlaintextRefused;
            let _ = startup::send_fatal(&mut client.stream, &e).await;
            return self.end_with(Err(e)).await;
        }

        let established = tokio::select! {
            r = tokio::time::timeout_at(deadline, self.establish(&mut client)) => match r {
                Ok(r) => r,
                Err(_) => Err(SessionError::StartupTimeout(limits.startup_timeout)),
            },
            _ = stop_rx.changed() => Err(SessionError::Terminated("gateway shutting down".into())),
        };
        let est = match established {
            Ok(est) => est,
            Err(e) => {
                let _ = startup::send_fatal(&mut client.stream, &e).await;
                return self.end_with(Err(e)).await;
            }
        };

        let relay = Relay {
            id: self.header.id,
            connection: est.connection.clone(),
            recorder: self.gw.recorder.clone(),
            client_frames: limits.client_frames.clone(),
            max_target_message_bytes: limits.max_target_message_bytes,
            rows_per_statement: limits.rows_per_statement,
            strict: est.strict,
            policy: est.policy,
            initial_settings: est.upstream.params.clone(),
        };
        tracing::info!("relaying");
        let end = relay
            .run(
                client.stream,
                client.buffered,
                est.upstream.stream,
                est.upstream.buffered,
                self.stop.clone(),
            )
            .await;
        self.gw.cancels.forget(est.cancel_key);
        self.end_with(match end {
            RelayEnd::Closed => Ok(()),
            RelayEnd::Failed(e) => Err(e),
        })
        .await;
    }

    /// Authenticate, authorize, connect upstream, and greet the client.
    async fn establish(&mut self, client: &mut ClientStartup) -> Result<Established, SessionError> {
        if self.over_limit {
            return Err(SessionError::TooManySessions(self.gw.limits.max_sessions));
        }
        let requested = self.header.connection.clone().unwrap_or_default();
        let token = startup::read_token(client).await?;
        let identity = self.gw.verifier.verify(&token).await?;
        drop(token);

        let span = tracing::Span::current();
        // Debug formatting escapes control characters: the connection name
        // is whatever the client sent, and must not forge log lines.
        span.record("identity", tracing::field::debug(&identity.subject));
        span.record("connection", tracing::field::debug(&requested));
        self.header.identity = Some(identity.subject.clone());
        self.header.groups = identity.groups.clone();
        self.send_header().await;
        self.gw.registry.do_send(Update {
            id: self.header.id,
            identity: Some(identity.subject.clone()),
            connection: Some(requested.clone()),
        });

        let target = self.gw.authorize(&identity, &requested)?;
        let upstream = upstream::connect(target, &client.params).await?;

        let cancel_key = self.gw.cancels.mint(CancelTarget {
            session: self.header.id,
            address: target.address.clone(),
            process_id: upstream.process_id,
            secret_key: upstream.secret_key,
        });
        let mut out = BytesMut::with_capacity(512);
        codec::put_auth(&mut out, 0, &[]);
        for (k, v) in &upstream.params {
            codec::put_parameter_status(&mut out, k, v);
        }
        codec::put_backend_key(&mut out, cancel_key.0, cancel_key.1);
        codec::put_ready(&mut out, b'I');
        let written = async {
            client.stream.write_all(&out).await?;
            client.stream.flush().await
        }
        .await;
        if let Err(e) = written {
            self.gw.cancels.forget(cancel_key);
            return Err(SessionError::ClientIo(e));
        }
        self.gw
            .recorder
            .send(RecorderMsg::Events(
                self.header.id,
                vec![PendingEvent {
                    at: now_micros(),
                    dir: Direction::Gateway,
                    kind: EventKind::Connected {
                        target: target.name.clone(),
                    },
                }],
            ))
            .await;
        let policy = target.sql_policy.as_ref();
        let gated = policy.enforcing() || policy.masker.is_some();
        Ok(Established {
            policy: gated.then(|| PolicyCtx {
                policy: target.sql_policy.clone(),
                broker: self.gw.approvals.clone(),
                identity: identity.subject.clone(),
                groups: identity.groups.clone(),
                target: target.clone(),
            }),
            strict: target.strict_recording,
            upstream,
            cancel_key,
            connection: target.name.clone(),
        })
    }

    async fn send_header(&mut self) {
        self.header_sent = true;
        self.gw
            .recorder
            .send(RecorderMsg::Header(self.header.clone()))
            .await;
    }

    /// Log and record how the session ended.
    async fn end_with(mut self, result: Result<(), SessionError>) {
        let (outcome, reason) = match &result {
            Ok(()) => (Outcome::Closed, None),
            Err(e) => (e.outcome(), Some(e.to_string())),
        };
        match &result {
            Ok(()) => tracing::info!("session closed"),
            Err(e) => {
                tracing::warn!(side = ?e.side(), sqlstate = e.sqlstate(), "session ended: {e}")
            }
        }
        if !self.header_sent {
            self.send_header().await;
        }
        self.gw
            .recorder
            .send(RecorderMsg::Close {
                id: self.header.id,
                outcome,
                reason,
                at: now_micros(),
            })
            .await;
    }

    /// A CancelRequest: forward the target's own key if ours matches.
    async fn cancel(self, key: (i32, i32)) {
        let Some(target) = self.gw.cancels.lookup(key) else {
            tracing::info!("cancel request with an unknown key ignored");
            return;
        };
        tracing::info!(session = %target.session, "forwarding cancel request");
        self.gw
            .recorder
            .send(RecorderMsg::Events(
                target.session,
                vec![PendingEvent {
                    at: now_micros(),
                    dir: Direction::Client,
                    kind: EventKind::Cancel,
                }],
            ))
            .await;
        if let Err(e) = cancel::forward(&target).await {
            tracing::warn!(session = %target.session, "cancel could not reach the target: {e}");
        }
    }
}
