//! What every session shares: the verifier, the connection table (both
//! protocols), roles, limits and session slots, TLS, and handles to the
//! registry, the recorder and the approval broker.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::access::{Grant, Roles};
use crate::auth::{Identity, TokenVerifier};
use crate::error::SessionError;
use crate::pg::cancel::CancelMap;
use crate::recorder::RecorderHandle;
use crate::registry::RegistryHandle;

/// A secret held by the appliance. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How Gatehouse talks TLS to a PostgreSQL target.
#[derive(Clone)]
pub enum TargetTls {
    Disable,
    /// Encrypt, without verifying the server's certificate.
    Require(Arc<rustls::ClientConfig>),
    /// Encrypt and verify the certificate chain and host name.
    VerifyFull(Arc<rustls::ClientConfig>),
}

impl fmt::Debug for TargetTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetTls::Disable => "disable",
            TargetTls::Require(_) => "require",
            TargetTls::VerifyFull(_) => "verify-full",
        })
    }
}

/// A PostgreSQL connection as configured: where it is and the credential
/// only the appliance holds.
#[derive(Debug, Clone)]
pub struct PgTarget {
    pub name: String,
    /// `host:port`.
    pub address: String,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    pub tls: TargetTls,
    pub policy: String,
    /// What the policy blocks, holds for approval and masks.
    pub sql_policy: Arc<crate::policy::SqlPolicy>,
    /// Table names for column masks, cached per target.
    pub catalog: Arc<crate::pg::catalog::Catalog>,
    /// Strict recording: a statement reaches the target only after its
    /// event is durable; a recording failure ends the session (58030).
    pub strict_recording: bool,
    /// Settings a client may give at startup (see [`crate::pg::options`]).
    pub startup_options: Vec<String>,
}

impl PgTarget {
    pub fn host(&self) -> &str {
        self.address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
    }
}

/// Default cap on a client frame: PostgreSQL accepts up to 1 GiB, but a
/// gateway buffering whole frames needs a far smaller bound; 64 MiB covers
/// large COPY rows and generated SQL.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Bounds that keep one client from hurting the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent sessions; beyond it clients get 53300.
    pub max_sessions: usize,
    /// TLS handshake, startup and authentication must finish within this.
    pub startup_timeout: Duration,
    /// Largest frame a client may send, per message type.
    pub client_frames: crate::pg::codec::FrameLimits,
    /// Largest single message accepted from a target. Frames are buffered
    /// whole, and the client chooses what the target sends (`SELECT
    /// repeat('x', 900000000)`), so this bounds memory per session.
    pub max_target_message_bytes: usize,
    /// Result rows recorded per statement; the rest are counted.
    pub rows_per_statement: u64,
    /// How long sessions may finish on shutdown before they are ended.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Each idle session costs a few tens of KiB; 10,000 fits the
            // smallest appliance with room to spare.
            max_sessions: 10_000,
            // Long enough for a slow TLS client and token verification with
            // a JWKS refresh, short enough that stalled sockets do not pile up.
            startup_timeout: Duration::from_secs(10),
            client_frames: crate::pg::codec::FrameLimits::uniform(DEFAULT_MAX_MESSAGE_BYTES),
            // Far above real rows, far below what a few sessions could use
            // to exhaust the appliance's memory.
            max_target_message_bytes: 256 << 20,
            rows_per_statement: 1000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A configured connection, of whichever protocol.
#[derive(Debug, Clone)]
pub enum Target {
    Postgres(PgTarget),
    Ssh(Arc<crate::ssh::SshTarget>),
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Postgres(t) => &t.name,
            Target::Ssh(t) => &t.name,
        }
    }
}

/// The connection kind a session asks for: a PostgreSQL session can only
/// reach PostgreSQL connections, an SSH session SSH ones.
pub trait ConnectionKind {
    fn of(target: &Target) -> Option<&Self>;
}

impl ConnectionKind for PgTarget {
    fn of(target: &Target) -> Option<&Self> {
        match target {
            Target::Postgres(t) => Some(t),
            Target::Ssh(_) => None,
        }
    }
}

impl ConnectionKind for Arc<crate::ssh::SshTarget> {
    fn of(target: &Target) -> Option<&Self> {
        match target {
            Target::Ssh(t) => Some(t),
            Target::Postgres(_) => None,
        }
    }
}

pub struct Gateway {
    pub verifier: Arc<dyn TokenVerifier>,
    /// Every configured connection by name, PostgreSQL and SSH.
    pub connections: HashMap<String, Target>,
    /// Identity → roles → connections; replaced on a config reload.
    pub roles: Roles,
    pub limits: Limits,
    /// Session slots shared by every protocol's listener.
    pub admissions: crate::listener::Admissions,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Accept plaintext startups (loopback demos only).
    pub allow_plaintext: bool,
    pub recorder: RecorderHandle,
    pub registry: RegistryHandle,
    pub cancels: CancelMap,
    /// Where held statements and commands wait for operators.
    pub approvals: Option<crate::approval::BrokerHandle>,
    /// The SSH listener's keys and settings, when `[listen] ssh` is served.
    pub ssh: Option<Arc<crate::ssh::SshService>>,
}

impl Gateway {
    /// Identity → roles → the requested connection of kind `K`, with what
    /// granted it (see [`crate::access`]). Unknown and forbidden
    /// connections, and connections of another protocol, produce the same
    /// client-visible error.
    pub fn authorize<K: ConnectionKind>(
        &self,
        identity: &Identity,
        requested: &str,
    ) -> Result<(&K, Grant), SessionError> {
        let refuse = |why| SessionError::NotAllowed {
            requested: requested.to_owned(),
            subject: identity.qualified(),
            why,
        };
        let target = self
            .connections
            .get(requested)
            .and_then(K::of)
            .ok_or_else(|| refuse("no such connection"))?;
        match self.roles.grant(identity, requested) {
            Some(grant) => Ok((target, grant)),
            None => Err(refuse("no role grants it")),
        }
    }
}
