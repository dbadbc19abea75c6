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
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::cancel::{self, CancelTarget};
use super::codec;
use super::relay::{PolicyCtx, Relay, RelayEnd, Stop};
use super::startup::{self, ClientStartup, Hello};
use super::upstream::{self, Upstream};
use crate::error::SessionError;
use crate::gateway::Gateway;
use crate::lifecycle::{self, SessionRecord, capped};
pub use crate::listener::Admission;
use crate::recorder::{PendingEvent, RecorderMsg, now_micros};
use crate::recording::{Direction, EventKind, Outcome, RecordingId};
use crate::registry::{Kill, SessionState, SessionStats, Unregister, Update};

/// How long a cancelling client may take to take our close_notify.
const CANCEL_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct PgSession {
    id: RecordingId,
    gw: Arc<Gateway>,
    socket: Option<TcpStream>,
    peer: SocketAddr,
    started_at: i64,
    /// Held for the session's life; released when the actor drops.
    admission: Admission,
    stop: Rc<watch::Sender<Option<Stop>>>,
    /// Counters and state consoles see through the registry.
    stats: Arc<SessionStats>,
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
            stats: Arc::default(),
        }
    }
}

impl Actor for PgSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let record = SessionRecord::new(
            self.gw.recorder.clone(),
            self.id,
            "postgres",
            self.started_at,
            self.peer.to_string(),
            self.stats.clone(),
        );
        lifecycle::register(
            &self.gw.registry,
            &record,
            "postgres",
            ctx.address().recipient(),
        );
        let Some(socket) = self.socket.take() else {
            ctx.stop();
            return;
        };
        let panic_end = record.panic_end();
        let life = Lifecycle {
            gw: self.gw.clone(),
            record,
            over_limit: self.admission.over_limit(),
            stop: self.stop.clone(),
            stats: self.stats.clone(),
        };
        let span = tracing::info_span!("session", id = %self.id, peer = %self.peer,
            identity = tracing::field::Empty, connection = tracing::field::Empty);
        lifecycle::spawn_life(self, ctx, life.run(socket), span, panic_end);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.gw.registry.do_send(Unregister(self.id));
    }
}

impl Handler<Kill> for PgSession {
    type Result = ();

    fn handle(&mut self, msg: Kill, _: &mut Self::Context) {
        self.stop
            .send_replace(Some(Stop::Terminated(msg.message())));
    }
}

/// The session's life as one future, owned by the actor's context.
struct Lifecycle {
    gw: Arc<Gateway>,
    record: SessionRecord,
    over_limit: bool,
    stop: Rc<watch::Sender<Option<Stop>>>,
    stats: Arc<SessionStats>,
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
            _ = stop_rx.changed() => Err(self.stopped()),
        };
        let mut client = match accepted {
            Ok(Hello::Startup(client)) => client,
            Ok(Hello::Cancel {
                process_id,
                secret_key,
                stream,
            }) => return self.cancel((process_id, secret_key), stream).await,
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
        self.record.header.client_user = client.param("user").map(capped);
        // PostgreSQL's own default: the database is named like the user.
        self.record.header.connection = client
            .param("database")
            .or(client.param("user"))
            .map(capped);
        self.record.send_header().await;
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
            _ = stop_rx.changed() => Err(self.stopped()),
        };
        let est = match established {
            Ok(est) => est,
            Err(e) => {
                let _ = startup::send_fatal(&mut client.stream, &e).await;
                return self.end_with(Err(e)).await;
            }
        };

        let relay = Relay {
            id: self.record.header.id,
            connection: est.connection.clone(),
            recorder: self.gw.recorder.clone(),
            client_frames: limits.client_frames.clone(),
            max_target_message_bytes: limits.max_target_message_bytes,
            rows_per_statement: limits.rows_per_statement,
            strict: est.strict,
            policy: est.policy,
            initial_settings: est.upstream.params.clone(),
            stats: self.stats.clone(),
        };
        self.stats.set_state(SessionState::Active);
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
        let requested = self.record.header.connection.clone().unwrap_or_default();
        let token = startup::read_token(client).await?;
        let identity = self.gw.verifier.verify(&token).await?;
        drop(token);

        let span = tracing::Span::current();
        // Debug formatting escapes control characters: the connection name
        // is whatever the client sent, and must not forge log lines.
        let qualified = identity.qualified();
        span.record("identity", tracing::field::debug(&qualified));
        span.record("connection", tracing::field::debug(&requested));
        self.gw.registry.do_send(Update {
            id: self.record.header.id,
            identity: Some(qualified.clone()),
            connection: Some(requested.clone()),
        });

        // The header names who asked, and what granted it, whether or not
        // authorization succeeds.
        let gw = self.gw.clone();
        let authorized = gw.authorize::<crate::gateway::PgTarget>(&identity, &requested);
        self.record.header.identify(&identity);
        if let Ok((_, grant)) = &authorized {
            self.record.header.granted(grant);
        }
        self.record.send_header().await;
        let (target, _) = authorized?;
        let params =
            super::options::check(&client.params, &target.startup_options).map_err(|error| {
                SessionError::StartupOption {
                    connection: target.name.clone(),
                    error,
                }
            })?;
        let upstream = upstream::connect(target, &params).await?;

        let cancel_key = self.gw.cancels.mint(CancelTarget {
            session: self.record.header.id,
            target: target.clone(),
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
                self.record.header.id,
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
                identity: qualified,
                groups: identity.groups.clone(),
                target: target.clone(),
            }),
            strict: target.strict_recording,
            upstream,
            cancel_key,
            connection: target.name.clone(),
        })
    }

    /// Why the session was stopped before it relayed: the kill's own
    /// message (naming the operator) or the shutdown.
    fn stopped(&self) -> SessionError {
        match &*self.stop.borrow() {
            Some(Stop::Terminated(why)) => SessionError::Terminated(why.clone()),
            _ => SessionError::Terminated("gateway shutting down".into()),
        }
    }

    /// Log and record how the session ended.
    async fn end_with(self, result: Result<(), SessionError>) {
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
        self.record.end(outcome, reason).await;
    }

    /// A CancelRequest: forward the target's own key if ours matches, then
    /// close the client's connection as PostgreSQL does (cleanly, TLS
    /// included), answering nothing either way.
    async fn cancel(self, key: (i32, i32), mut stream: super::stream::PgStream) {
        self.forward_cancel(key).await;
        let closed = tokio::time::timeout(CANCEL_CLOSE_TIMEOUT, stream.shutdown()).await;
        if !matches!(closed, Ok(Ok(()))) {
            tracing::debug!("cancel request's connection did not close cleanly");
        }
    }

    async fn forward_cancel(&self, key: (i32, i32)) {
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
