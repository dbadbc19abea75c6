//! The connection to the target: russh's client with the host key pinned
//! in the config and the credential only the appliance holds.
//!
//! Every failure knows its side: a host that does not answer is
//! `TargetUnreachable`, a host that presents another key is
//! `HostKeyMismatch` (possibly a man in the middle: the session is refused
//! before any credential is sent), a host that refuses the credential is
//! `TargetAuth`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use russh::client::{self, AuthResult};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use tokio::sync::mpsc;

use super::{SshCredential, SshTarget};
use crate::error::SessionError;

/// Connecting and logging in must finish within this; a target that
/// accepts TCP but never speaks SSH cannot hold the agent's session.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the gateway checks that an idle target is still there, and
/// how many unanswered checks end the session.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_MAX: usize = 4;

/// Connections the target accepted for the agent's remote forwards wait
/// here for the gateway to open the agent's side; more than this many
/// waiting and the target's opens are refused.
const INCOMING_QUEUE: usize = 16;

/// The client side's russh handler: checks the pinned key, and hands
/// `forwarded-tcpip` opens (connections to ports the target listens on
/// for the agent's `-R`) to the session, which refuses them unless the
/// agent asked for that forward and the policy allows it.
pub struct TargetHandler {
    incoming: mpsc::Sender<Incoming>,
    /// Channels the target tried to open and was refused (logged up to a
    /// point: a looping target must not fill the log).
    refused: u32,
    pinned: PublicKey,
    /// Set when the target presented another key, for the error message.
    mismatch: Arc<AtomicBool>,
    /// The key the target presented, for the log.
    presented: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for TargetHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // A host certificate is judged by its plain key: keys are pinned,
        // host CAs are not configured.
        let presented = key.public_key();
        let ok = presented.key_data() == self.pinned.key_data();
        if !ok {
            self.mismatch.store(true, Ordering::Release);
            if let Ok(mut p) = self.presented.lock() {
                *p = Some(presented.fingerprint(HashAlg::Sha256).to_string());
            }
        }
        Ok(ok)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let incoming = Incoming {
            channel,
            listening: format!("{connected_address}:{connected_port}"),
            originator: format!("{originator_address}:{originator_port}"),
            reply,
        };
        // Full or gone: dropping the reply refuses the target's open.
        if let Err(e) = self.incoming.try_send(incoming) {
            tracing::warn!("a connection to a remote forward refused: {e}");
        }
        Ok(())
    }

    // Everything else a target may open towards the gateway is refused
    // (russh's defaults accept): the gateway asks for none of it, and a
    // target must not get a way to the agent or to the appliance.

    async fn server_channel_open_session(
        &mut self,
        _: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse(reply, "session").await
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _: russh::Channel<client::Msg>,
        _: &str,
        _: u32,
        _: &str,
        _: u32,
        reply: client::ChannelOpenHandle,
        _: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse(reply, "direct-tcpip").await
    }

    async fn server_channel_open_x11(
        &mut self,
        _: russh::Channel<client::Msg>,
        _: &str,
        _: u32,
        reply: client::ChannelOpenHandle,
        _: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse(reply, "x11").await
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        _: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse(reply, "auth-agent").await
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _: russh::Channel<client::Msg>,
        _: &str,
        reply: client::ChannelOpenHandle,
        _: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse(reply, "forwarded-streamlocal").await
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _: russh::Channel<client::Msg>,
        _: &str,
        reply: client::ChannelOpenHandle,
        _: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse(reply, "direct-streamlocal").await
    }
}

impl TargetHandler {
    async fn refuse(
        &mut self,
        reply: client::ChannelOpenHandle,
        kind: &str,
    ) -> Result<(), russh::Error> {
        self.refused += 1;
        if self.refused <= 16 {
            tracing::warn!("the target opened a {kind} channel towards the gateway: refused");
        }
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }
}

/// A connection the target accepted on a port it listens on for the
/// agent's remote forward; the target's open is answered once the agent's
/// side is open (or refused).
pub struct Incoming {
    pub channel: russh::Channel<client::Msg>,
    /// The address and port the target listens on (`ADDR:PORT`).
    pub listening: String,
    /// Who connected to it, as the target saw them.
    pub originator: String,
    pub reply: client::ChannelOpenHandle,
}

/// A logged-in connection to the target.
pub struct Upstream {
    pub handle: client::Handle<TargetHandler>,
    /// Taken once by the session, which answers them.
    pub incoming: std::sync::Mutex<Option<mpsc::Receiver<Incoming>>>,
}

/// Connect to `target` and log in with its credential.
pub async fn connect(target: &SshTarget) -> Result<Upstream, SessionError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(target)).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::TargetUnreachable {
            connection: target.name.clone(),
            address: target.address.clone(),
            detail: format!("no SSH login within {CONNECT_TIMEOUT:?}"),
        }),
    }
}

async fn connect_inner(target: &SshTarget) -> Result<Upstream, SessionError> {
    let unreachable = |detail: String| SessionError::TargetUnreachable {
        connection: target.name.clone(),
        address: target.address.clone(),
        detail,
    };
    let socket = tokio::net::TcpStream::connect(&target.address)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = socket.set_nodelay(true);
    crate::pg::stream::keepalive(&socket);
    let config = Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Default::default()
    });
    let mismatch = Arc::new(AtomicBool::new(false));
    let presented = Arc::new(std::sync::Mutex::new(None));
    let (incoming, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let handler = TargetHandler {
        incoming,
        refused: 0,
        pinned: target.host_key.clone(),
        mismatch: mismatch.clone(),
        presented: presented.clone(),
    };
    let mut handle = match client::connect_stream(config, socket, handler).await {
        Ok(h) => h,
        Err(e) => {
            if mismatch.load(Ordering::Acquire) {
                return Err(SessionError::HostKeyMismatch {
                    connection: target.name.clone(),
                    presented: presented
                        .lock()
                        .ok()
                        .and_then(|p| p.clone())
                        .unwrap_or_default(),
                    pinned: target.host_key.fingerprint(HashAlg::Sha256).to_string(),
                });
            }
            return Err(unreachable(format!("SSH handshake failed: {e}")));
        }
    };
    let refused = |detail: String| SessionError::TargetAuth {
        connection: target.name.clone(),
        detail,
    };
    let result = match &target.credential {
        SshCredential::Key(key) => {
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| refused(e.to_string()))?
                .flatten();
            handle
                .authenticate_publickey(
                    target.user.clone(),
                    PrivateKeyWithHashAlg::new(key.clone(), hash),
                )
                .await
        }
        SshCredential::Password(p) => {
            handle
                .authenticate_password(target.user.clone(), p.expose())
                .await
        }
    }
    .map_err(|e| refused(e.to_string()))?;
    match result {
        AuthResult::Success => Ok(Upstream {
            handle,
            incoming: std::sync::Mutex::new(Some(incoming_rx)),
        }),
        AuthResult::Failure { .. } => Err(refused(format!(
            "the target refused {:?}'s credential",
            target.user
        ))),
    }
}
