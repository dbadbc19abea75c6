//! The russh server handler of one agent connection.
//!
//! Login: the SSH user name is the connection name. An agent logs in with
//! a certificate from Gatehouse's user CA (stock OpenSSH), or with its OIDC
//! token as the password (`password` or `keyboard-interactive`). Either
//! gives an identity, which goes through the one `Gateway::authorize`
//! (identity → roles → connection); unknown and forbidden connections are
//! refused the same way. Plain public keys are never accepted.
//!
//! After login the target is reached with the held credential; then each
//! session channel the agent opens gets a target channel and a relay
//! ([`super::channel`]). Requests and bytes go to the relay in arrival
//! order; a request is answered only once the relay decided, so replies
//! reach the agent in the order it asked.
//!
//! The handler tells its session ([`Note`]) what it learned — who the
//! agent claims and proved to be, why a login failed, what must end the
//! connection — and the session records it.
//!
//! # Layout
//!
//! - `mod.rs` — the limits, [`Note`], [`ServerHandler`] and its
//!   `russh::server::Handler` impl (every russh callback, in one block).
//! - `auth.rs` — login: the methods offered, token and certificate
//!   verification, authorization, the refusal delay ([`REFUSAL_DELAY`]).
//! - `inputs.rs` — a channel's inputs handed to its relay in order, and
//!   requests answered once the relay decided.
//! - `forwarding.rs` — port forwards: opening `direct-tcpip` and remote
//!   (`tcpip-forward`) forwards, recording refused ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use russh::keys::Certificate;
use russh::server::{Auth, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Pty, Sig};
use tokio::sync::{mpsc, watch};

use super::channel::{self, ChannelInput, Relays, Request};
use super::forward;
use super::upstream::{self, Upstream};
use super::{SshService, SshTarget};
use crate::auth::Identity;
use crate::error::SessionError;
use crate::gateway::Gateway;
use crate::recording::RecordingId;
use crate::registry::SessionStats;

mod auth;
mod forwarding;
mod inputs;

pub use auth::REFUSAL_DELAY;
use auth::{refuse_slowly, verify_certificate};

/// Channels one connection may have open at once. OpenSSH's own server
/// allows 10 sessions per connection by default; a client opening
/// thousands is refused beyond this instead of costing a target channel
/// and a relay each.
pub const MAX_CHANNELS: usize = 32;

/// Inputs queued per channel before the connection waits for the relay
/// (back-pressure on the agent's TCP connection).
const CHANNEL_QUEUE: usize = 64;

/// Longest token accepted as a password: far above real JWTs, far below
/// what could cost the verifier real work.
const MAX_TOKEN_BYTES: usize = 64 << 10;

/// What the handler tells its session.
#[derive(Debug)]
pub enum Note {
    /// The user name (connection) the agent asked for.
    Claimed(String),
    /// Who the agent proved to be (before authorization).
    Identified(Identity),
    /// What granted the connection it asked for.
    Granted(crate::access::Grant),
    /// A login attempt failed; the latest reason is the session's if no
    /// attempt succeeds.
    Refused(SessionError),
    /// Logged in and connected to the target.
    Established { target: String },
    /// End the connection, telling the agent why.
    Fatal(SessionError),
    /// The connection ends with this error; the agent was already told.
    Ended(SessionError),
}

pub struct ServerHandler {
    gw: Arc<Gateway>,
    svc: Arc<SshService>,
    peer: SocketAddr,
    session: RecordingId,
    over_limit: bool,
    notes: mpsc::UnboundedSender<Note>,
    terminate: watch::Receiver<Option<String>>,
    claimed: Option<String>,
    /// A certificate was refused: the plain key OpenSSH tries after it is
    /// not what the refusal should be recorded as.
    certificate_refused: bool,
    authorized: Option<(Identity, Arc<SshTarget>)>,
    upstream: Option<Arc<Upstream>>,
    relays: Option<Arc<Relays>>,
    channels: HashMap<ChannelId, mpsc::Sender<ChannelInput>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The session's live counters (consoles read them).
    stats: Arc<SessionStats>,
}

impl ServerHandler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gw: Arc<Gateway>,
        svc: Arc<SshService>,
        peer: SocketAddr,
        session: RecordingId,
        over_limit: bool,
        notes: mpsc::UnboundedSender<Note>,
        terminate: watch::Receiver<Option<String>>,
        stats: Arc<SessionStats>,
    ) -> Self {
        ServerHandler {
            stats,
            gw,
            svc,
            peer,
            session,
            over_limit,
            notes,
            terminate,
            claimed: None,
            certificate_refused: false,
            authorized: None,
            upstream: None,
            relays: None,
            channels: HashMap::new(),
            tasks: Vec::new(),
        }
    }

    fn note(&self, note: Note) {
        let _ = self.notes.send(note);
    }

    fn claim(&mut self, user: &str) {
        if self.claimed.as_deref() != Some(user) {
            self.claimed = Some(user.to_owned());
            self.note(Note::Claimed(user.to_owned()));
        }
    }
}

impl Drop for ServerHandler {
    fn drop(&mut self) {
        // The connection ended: relays stuck writing to a vanished agent or
        // target end here.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl russh::server::Handler for ServerHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if let Some(refused) = self.over_limit() {
            return Ok(refused);
        }
        self.claim(user);
        Ok(self.reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if let Some(refused) = self.over_limit() {
            return Ok(refused);
        }
        let started = tokio::time::Instant::now();
        let identity = self.verify_token(password).await;
        let auth = self.login(user, identity);
        Ok(refuse_slowly(started, auth).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if let Some(refused) = self.over_limit() {
            return Ok(refused);
        }
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "Gatehouse".into(),
                instructions: "Paste your access token.".into(),
                prompts: vec![("Token: ".into(), false)].into(),
            });
        };
        let answer = response.next().unwrap_or_default();
        let started = tokio::time::Instant::now();
        let token = String::from_utf8_lossy(&answer).into_owned();
        let identity = self.verify_token(&token).await;
        let auth = self.login(user, identity);
        Ok(refuse_slowly(started, auth).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        _offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Some(refused) = self.over_limit() {
            return Ok(refused);
        }
        self.claim(user);
        // russh offers a certificate's plain key first; the certificate
        // itself is checked in `auth_openssh_certificate`, plain keys are
        // refused in `auth_publickey`.
        if self.svc.user_ca.is_some() {
            Ok(Auth::Accept)
        } else {
            Ok(self.reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.claim(user);
        let e = SessionError::ClientUnsupported(
            "plain public keys are not accepted: log in with a Gatehouse certificate (gatehouse login) or a token as password",
        );
        tracing::info!(peer = %self.peer, key = %key.public_key.fingerprint(Default::default()), "SSH login refused: a plain public key");
        if !self.certificate_refused {
            self.note(Note::Refused(e));
        }
        Ok(self.reject())
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        if let Some(refused) = self.over_limit() {
            return Ok(refused);
        }
        let identity = match &self.svc.user_ca {
            Some(ca) => verify_certificate(ca, certificate),
            None => Err(SessionError::ClientUnsupported(
                "certificate logins are not configured",
            )),
        };
        let started = tokio::time::Instant::now();
        self.certificate_refused |= identity.is_err();
        let auth = self.login(user, identity);
        Ok(refuse_slowly(started, auth).await)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some((identity, target)) = self.authorized.clone() else {
            return Ok(());
        };
        match upstream::connect(&target).await {
            Ok(up) => {
                tracing::info!(connection = %target.name, "connected to the target");
                self.upstream = Some(Arc::new(up));
                self.relays = Some(Arc::new(Relays {
                    session: self.session,
                    recorder: self.gw.recorder.clone(),
                    target: target.clone(),
                    identity,
                    broker: self.gw.approvals.clone(),
                    server: session.handle(),
                    terminate: self.terminate.clone(),
                    stats: self.stats.clone(),
                    remote_ports: Default::default(),
                }));
                let incoming = self
                    .upstream
                    .as_ref()
                    .and_then(|u| u.incoming.lock().ok().and_then(|mut i| i.take()));
                if let (Some(relays), Some(incoming)) = (self.relays.clone(), incoming) {
                    self.tasks.push(forward::remote(relays, incoming));
                }
                self.note(Note::Established {
                    target: target.name.clone(),
                });
            }
            Err(e) => {
                // Told here, in order, before the agent can act on the
                // login it just got.
                tracing::warn!("ending the connection: {e}");
                let _ =
                    session.disconnect(russh::Disconnect::ByApplication, &e.client_message(), "en");
                self.note(Note::Ended(e));
            }
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(up), Some(relays)) = (self.upstream.clone(), self.relays.clone()) else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        self.channels.retain(|_, tx| !tx.is_closed());
        self.tasks.retain(|t| !t.is_finished());
        if self.channels.len() >= MAX_CHANNELS {
            tracing::warn!(peer = %self.peer, "channel refused: {MAX_CHANNELS} already open on this connection");
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        }
        let target_channel = match up.handle.channel_open_session().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = %self.peer, "the target refused a session channel: {e}");
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
        };
        let id = channel.id();
        let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
        self.channels.insert(id, tx);
        reply.accept().await;
        self.tasks
            .push(channel::spawn(relays, id, channel, target_channel, rx));
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let (Some(up), Some(relays)) = (self.upstream.clone(), self.relays.clone())
            && relays.target.policy.port_forwarding
        {
            let ends = forward::Endpoints {
                forward: "direct-tcpip",
                from: format!("{originator_address}:{originator_port}"),
                to: format!("{host_to_connect}:{port_to_connect}"),
            };
            self.open_forward(channel, up, relays, ends, reply).await;
            return Ok(());
        }
        tracing::info!(peer = %self.peer, to = %format!("{host_to_connect}:{port_to_connect}").escape_debug(), "port forwarding refused");
        self.forward_refused(
            "direct-tcpip",
            format!("{originator_address}:{originator_port}"),
            format!("{host_to_connect}:{port_to_connect}"),
        )
        .await;
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.hand_to_relay(channel, ChannelInput::Close).await;
        self.channels.remove(&channel);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.hand_to_relay(channel, ChannelInput::Eof).await;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.hand_to_relay(channel, ChannelInput::Data(Bytes::copy_from_slice(data)))
            .await;
        Ok(())
    }

    async fn extended_data(
        &mut self,
        channel: ChannelId,
        code: u32,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.hand_to_relay(
            channel,
            ChannelInput::ExtendedData(code, Bytes::copy_from_slice(data)),
        )
        .await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.request(
            channel,
            Request::Pty {
                term: term.to_owned(),
                cols: col_width,
                rows: row_height,
                pix_width,
                pix_height,
                modes: modes.to_vec(),
            },
            session,
        )
        .await
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, "X11 forwarding refused");
        session.channel_failure(channel)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, "agent forwarding refused");
        session.channel_failure(channel)?;
        Ok(false)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.request(
            channel,
            Request::Env {
                name: variable_name.to_owned(),
                value: variable_value.to_owned(),
            },
            session,
        )
        .await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.request(channel, Request::Shell, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.request(channel, Request::Exec(data.to_vec()), session)
            .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.request(channel, Request::Subsystem(name.to_owned()), session)
            .await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.hand_to_relay(
            channel,
            ChannelInput::WindowChange {
                cols: col_width,
                rows: row_height,
                pix_width,
                pix_height,
            },
        )
        .await;
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.hand_to_relay(channel, ChannelInput::Signal(signal))
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if let (Some(up), Some(relays)) = (self.upstream.clone(), self.relays.clone())
            && relays.target.policy.port_forwarding
        {
            return Ok(self.remote_forward(&up, &relays, address, port).await);
        }
        tracing::info!(peer = %self.peer, "remote port forwarding refused");
        self.forward_refused("tcpip-forward", format!("{address}:{port}"), "agent".into())
            .await;
        Ok(false)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let (Some(up), Some(relays)) = (self.upstream.clone(), self.relays.clone()) else {
            return Ok(false);
        };
        let known = relays
            .remote_ports
            .lock()
            .is_ok_and(|mut ports| ports.remove(&port));
        if !known {
            return Ok(false);
        }
        let cancelled = tokio::time::timeout(
            channel::REQUEST_TIMEOUT,
            up.handle.cancel_tcpip_forward(address, port),
        )
        .await;
        let ends = forward::Endpoints {
            forward: "tcpip-forward",
            from: format!("target {address}:{port}"),
            to: "agent".into(),
        };
        let outcome = match &cancelled {
            Ok(Ok(())) => "cancelled".to_owned(),
            Ok(Err(e)) => format!("cancel failed: the target refused it ({e})"),
            Err(_) => "cancel failed: the target did not answer".to_owned(),
        };
        forward::record(&relays, None, &ends, &outcome).await;
        Ok(matches!(cancelled, Ok(Ok(()))))
    }
}
