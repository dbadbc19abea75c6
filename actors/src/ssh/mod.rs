//! The SSH gateway: agents log in to Gatehouse with stock `ssh`, `scp` and
//! `sftp`; Gatehouse logs in to the real host with a credential only it
//! holds and relays every channel, recorded and under policy.
//!
//! ```text
//! agent ──SSH──▶ SshSession ─────────────────────────────────────▶ target sshd
//!                 │ handshake (host key), login: certificate or        (held key or password,
//!                 │   token as password → identity → roles → connection  pinned host key)
//!                 │ one relay per channel: session (pty, env, shell, exec,
//!                 │   subsystem, signals, exit status), direct-tcpip
//!                 │ policy: commands (exec, interactive lines), paths (SFTP, scp),
//!                 │   port forwarding; output masked as a stream
//!                 └▶ Recorder
//! ```
//!
//! Layout:
//! - [`session`] the `SshSession` actor: registration, kill, the russh
//!   server run under deadlines, the recorded end.
//! - [`handler`] the russh server handler of one connection: login,
//!   channel opens, requests handed to the channel relays in order.
//! - [`upstream`] the connection to the target: pinned host key, the held
//!   credential.
//! - [`channel`] one session channel's relay: requests, the two data pumps,
//!   exit status; [`record`] what it records.
//! - [`forward`] an allowed `direct-tcpip` forward's relay, counted.
//! - [`sftp`] SFTP parsed both ways (path rules, file records with
//!   SHA-256) and the legacy scp command line.
//! - [`policy`] the SSH parts of a policy: env allowlist, command and path
//!   rules, port forwarding.

pub mod channel;
pub mod forward;
pub mod handler;
pub mod line;
pub mod policy;
pub mod record;
pub mod session;
pub mod sftp;
pub mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use russh::keys::{PrivateKey, PublicKey};
use tokio::net::TcpStream;

use crate::gateway::{Gateway, Secret};
use crate::listener::{Admission, Listener, Protocol};
pub use policy::SshPolicy;
pub use session::SshSession;

/// How Gatehouse logs in to an SSH target.
#[derive(Clone)]
pub enum SshCredential {
    Key(Arc<PrivateKey>),
    Password(Secret),
}

impl fmt::Debug for SshCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SshCredential::Key(_) => "Key(..)",
            SshCredential::Password(_) => "Password(..)",
        })
    }
}

/// An SSH connection as configured: where the host is, the key it must
/// present, and the credential only the appliance holds.
#[derive(Debug)]
pub struct SshTarget {
    pub name: String,
    /// `host:port`.
    pub address: String,
    pub user: String,
    pub credential: SshCredential,
    /// The target's host key; any other key refuses the session.
    pub host_key: PublicKey,
    pub policy: Arc<SshPolicy>,
}

/// What the SSH listener needs beyond the shared gateway.
pub struct SshService {
    /// The server configuration: host key, algorithms, timeouts.
    pub config: Arc<russh::server::Config>,
    /// The user CA whose certificates log agents in (`None`: certificate
    /// logins are refused).
    pub user_ca: Option<PublicKey>,
}

/// The SSH protocol, for [`Listener`].
pub struct Ssh;

impl Protocol for Ssh {
    const NAME: &'static str = "ssh";

    fn start(gw: Arc<Gateway>, socket: TcpStream, peer: SocketAddr, admission: Admission) {
        SshSession::new(gw, socket, peer, admission).start();
    }
}

/// The SSH listener: accepts until shutdown, within the gateway's session
/// limit.
pub type SshListener = Listener<Ssh>;
