//! Login: the methods offered to agents, a token or certificate proved,
//! the identity authorized for the connection asked for, and refusals
//! slowed down so tokens cannot be guessed fast.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::{Certificate, PublicKey};
use russh::server::Auth;
use russh::{MethodKind, MethodSet};

use super::{MAX_TOKEN_BYTES, Note, ServerHandler};
use crate::auth::Identity;
use crate::error::SessionError;
use crate::ssh::SshTarget;

impl ServerHandler {
    /// The methods offered to agents.
    fn methods(&self) -> MethodSet {
        let mut kinds = vec![MethodKind::Password, MethodKind::KeyboardInteractive];
        if self.svc.user_ca.is_some() {
            kinds.insert(0, MethodKind::PublicKey);
        }
        MethodSet::from(&kinds[..])
    }

    pub(super) fn reject(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.methods()),
            partial_success: false,
        }
    }

    /// Refuse everything once the gateway is over its session limit.
    pub(super) fn over_limit(&mut self) -> Option<Auth> {
        if self.over_limit {
            self.note(Note::Fatal(SessionError::TooManySessions(
                self.gw.limits.max_sessions,
            )));
            Some(self.reject())
        } else {
            None
        }
    }

    /// An identity was proved (or not): authorize it for `user`.
    pub(super) fn login(&mut self, user: &str, identity: Result<Identity, SessionError>) -> Auth {
        self.claim(user);
        let identity = match identity {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(peer = %self.peer, "SSH login refused: {e}");
                self.note(Note::Refused(e));
                return self.reject();
            }
        };
        self.note(Note::Identified(identity.clone()));
        match self.gw.authorize::<Arc<SshTarget>>(&identity, user) {
            Ok((target, grant)) => {
                tracing::info!(peer = %self.peer, identity = %identity.qualified().escape_debug(), connection = %target.name, "SSH login");
                self.authorized = Some((identity, target.clone()));
                self.note(Note::Granted(grant));
                Auth::Accept
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, "SSH login refused: {e}");
                self.note(Note::Refused(e));
                self.reject()
            }
        }
    }

    pub(super) async fn verify_token(&self, token: &str) -> Result<Identity, SessionError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SessionError::Token(crate::auth::TokenError::Malformed(
                "token too long".into(),
            )));
        }
        Ok(self.gw.verifier.verify(token.trim()).await?)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long a refused token or certificate login takes, so tokens cannot
/// be guessed fast. Only these refusals wait: russh's own delay would also
/// hold up the plain key OpenSSH offers (and signs) before its certificate,
/// costing every certificate login a second.
pub const REFUSAL_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) async fn refuse_slowly(started: tokio::time::Instant, auth: Auth) -> Auth {
    if matches!(auth, Auth::Reject { .. }) {
        tokio::time::sleep_until(started + REFUSAL_DELAY).await;
    }
    auth
}

/// A certificate presented at login: CA, validity and principal, then the
/// identity it carries.
pub(super) fn verify_certificate(
    ca: &PublicKey,
    cert: &Certificate,
) -> Result<Identity, SessionError> {
    Ok(crate::auth::certificate::verify(ca, cert, now_secs())?)
}
