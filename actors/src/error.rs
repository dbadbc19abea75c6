//! Session errors that know their side.
//!
//! Every way a session can end badly is one variant. From it the session
//! derives what the client sees (a SQLSTATE and a message that never carries
//! secrets or target internals), what the log sees (the `Display` text, with
//! full detail), and how the recording ends.

use crate::auth::TokenError;
use crate::pg::codec::CodecError;
use crate::recording::Outcome;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The agent sent something wrong or is not allowed.
    Client,
    /// The target failed or refused Gatehouse.
    Target,
    /// Gatehouse itself: limits, shutdown, bugs.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("protocol violation from client: {0}")]
    ClientProtocol(#[from] CodecError),
    #[error("client connection: {0}")]
    ClientIo(std::io::Error),
    #[error("plaintext startup refused: TLS is required")]
    PlaintextRefused,
    #[error("client asked for an unsupported startup: {0}")]
    ClientUnsupported(&'static str),
    #[error("invalid token: {0}")]
    Token(#[from] TokenError),
    #[error("connection {requested:?} refused for {subject}: {why}")]
    NotAllowed {
        requested: String,
        subject: String,
        why: &'static str,
    },
    #[error("connection {connection:?}: {error}")]
    StartupOption {
        connection: String,
        error: crate::pg::options::OptionError,
    },
    #[error("startup did not complete within {0:?}")]
    StartupTimeout(std::time::Duration),
    #[error("session limit of {0} reached")]
    TooManySessions(usize),
    #[error("connection {connection:?}: target {address} unreachable: {detail}")]
    TargetUnreachable {
        connection: String,
        address: String,
        detail: String,
    },
    #[error("connection {connection:?}: target refused the gateway's credential: {detail}")]
    TargetAuth { connection: String, detail: String },
    #[error(
        "connection {connection:?}: the target presented host key {presented}, not the pinned {pinned}"
    )]
    HostKeyMismatch {
        connection: String,
        presented: String,
        pinned: String,
    },
    #[error("certificate refused: {0}")]
    Certificate(#[from] crate::auth::certificate::CertError),
    #[error("connection {connection:?}: target failed: {detail}")]
    TargetFailed { connection: String, detail: String },
    #[error("connection {connection:?}: target connection lost: {detail}")]
    TargetLost { connection: String, detail: String },
    /// The target ended the session itself (`pg_terminate_backend`, an
    /// idle timeout, its shutdown) with a FATAL the client already got.
    #[error("connection {connection:?}: the target ended the session (SQLSTATE {code})")]
    TargetEnded { connection: String, code: String },
    #[error("terminated: {0}")]
    Terminated(String),
    #[error("strict recording failed, statement not forwarded: {0}")]
    RecordingFailed(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl SessionError {
    pub fn side(&self) -> Side {
        use SessionError::*;
        match self {
            ClientProtocol(_)
            | ClientIo(_)
            | PlaintextRefused
            | ClientUnsupported(_)
            | Token(_)
            | Certificate(_)
            | NotAllowed { .. }
            | StartupOption { .. }
            | StartupTimeout(_) => Side::Client,
            TargetUnreachable { .. }
            | HostKeyMismatch { .. }
            | TargetAuth { .. }
            | TargetFailed { .. }
            | TargetLost { .. }
            | TargetEnded { .. } => Side::Target,
            TooManySessions(_) | Terminated(_) | RecordingFailed(_) | Internal(_) => Side::Internal,
        }
    }

    /// The SQLSTATE the client receives.
    pub fn sqlstate(&self) -> &'static str {
        use SessionError::*;
        match self {
            ClientProtocol(_) | PlaintextRefused | ClientUnsupported(_) | StartupTimeout(_) => {
                "08P01"
            }
            ClientIo(_) => "08006",
            Token(_) | Certificate(_) | TargetAuth { .. } => "28000",
            NotAllowed { .. } => "3D000",
            StartupOption { error, .. } => match error {
                crate::pg::options::OptionError::NotAllowed(_) => "42501",
                _ => "42601",
            },
            TooManySessions(_) => "53300",
            TargetUnreachable { .. }
            | HostKeyMismatch { .. }
            | TargetFailed { .. }
            | TargetLost { .. }
            | TargetEnded { .. } => "08006",
            Terminated(_) => "57P01",
            RecordingFailed(_) => "58030",
            Internal(_) => "XX000",
        }
    }

    /// The message the client receives. It names the connection the client
    /// asked for but never a target address, a credential, or why the
    /// target refused Gatehouse; unknown and forbidden connections read the
    /// same so names cannot be probed.
    pub fn client_message(&self) -> String {
        use SessionError::*;
        match self {
            ClientProtocol(e) => format!("protocol violation: {e}"),
            ClientIo(_) => "connection failure".into(),
            PlaintextRefused => {
                "Gatehouse requires TLS: connect with sslmode=require or stricter".into()
            }
            ClientUnsupported(what) => format!("unsupported: {what}"),
            Token(e) => format!("invalid token: {e}"),
            Certificate(e) => format!("certificate refused: {e}"),
            NotAllowed { requested, .. } => {
                format!(
                    "connection \"{requested}\" does not exist or is not allowed for this identity"
                )
            }
            StartupOption { connection, error } => match error {
                crate::pg::options::OptionError::NotAllowed(setting) => format!(
                    "setting \"{setting}\" may not be set at startup on connection \"{connection}\" (its startup_options do not list it)"
                ),
                other => other.to_string(),
            },
            StartupTimeout(d) => format!("startup did not complete within {} s", d.as_secs()),
            TooManySessions(_) => "too many sessions on this gateway; try again later".into(),
            TargetUnreachable { connection, .. } => {
                format!("connection \"{connection}\" is unreachable")
            }
            TargetAuth { .. } => {
                "the gateway could not authenticate to the target; an administrator has the details"
                    .into()
            }
            HostKeyMismatch { connection, .. } => format!(
                "connection \"{connection}\": the target's host key does not match the pinned key; session refused (an administrator has the details)"
            ),
            TargetFailed { connection, .. } => format!("connection \"{connection}\" failed"),
            TargetLost { connection, .. } => format!("connection \"{connection}\" was lost"),
            TargetEnded { connection, .. } => {
                format!("connection \"{connection}\" was ended by the target")
            }
            Terminated(why) => format!("terminating connection: {why}"),
            RecordingFailed(_) => {
                "the session could not be recorded; the statement was not executed".into()
            }
            Internal(_) => "internal gateway error".into(),
        }
    }

    /// How the recording of a session that ended with this error ends.
    pub fn outcome(&self) -> Outcome {
        use SessionError::*;
        match self {
            PlaintextRefused
            | ClientUnsupported(_)
            | Token(_)
            | Certificate(_)
            | NotAllowed { .. }
            | StartupOption { .. }
            | TooManySessions(_)
            | TargetAuth { .. } => Outcome::Refused,
            Terminated(_) => Outcome::Terminated,
            // As directly: the server said why (recorded as its error) and
            // closed.
            TargetEnded { .. } => Outcome::Closed,
            _ => Outcome::Failed,
        }
    }
}
