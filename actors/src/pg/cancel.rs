//! Cancel keys: clients get the target's backend pid and a secret minted
//! by Gatehouse, never the target's own secret.
//!
//! The pid is the target's, so `pg_backend_pid()`, the pid of a
//! NotificationResponse and the pid the driver was given agree (pool
//! health checks and LISTEN/NOTIFY code compare them). A CancelRequest
//! arrives on a fresh connection with no authentication, so the pair is
//! the only proof: it is looked up as (pid, minted secret), 32 random bits
//! against a known pid, as strong as PostgreSQL's own key, and maps to the
//! target's real secret, which never leaves the appliance. A cancel goes
//! to the target the way the session did: through TLS when the
//! connection's `tls` mode asks for it, so the target's key never crosses
//! the network in plaintext.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::error::SessionError;
use crate::gateway::PgTarget;
use crate::recording::RecordingId;

/// How long forwarding a cancel may take (connect, TLS, write): a target
/// that does not answer must not hold the cancelling client.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a cancel for one session must go.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    pub session: RecordingId,
    pub target: PgTarget,
    pub process_id: i32,
    pub secret_key: i32,
}

#[derive(Clone, Default)]
pub struct CancelMap {
    inner: Arc<Mutex<HashMap<(i32, i32), CancelTarget>>>,
}

impl CancelMap {
    /// The key a session's client gets: the target's pid and a fresh
    /// secret (unique with that pid among live sessions), remembered with
    /// where it points.
    pub fn mint(&self, target: CancelTarget) -> (i32, i32) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let secret = uuid::Uuid::new_v4().as_u128() as i32;
            let key = (target.process_id, secret);
            if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(key) {
                slot.insert(target);
                return key;
            }
        }
    }

    pub fn forget(&self, key: (i32, i32)) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    pub fn lookup(&self, key: (i32, i32)) -> Option<CancelTarget> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    }
}

/// Send the target's own CancelRequest. PostgreSQL answers nothing and
/// closes; a failure only means the statement keeps running.
pub async fn forward(target: &CancelTarget) -> Result<(), SessionError> {
    let send = async {
        let mut stream = super::upstream::open(&target.target).await?;
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(
            target.process_id,
            target.secret_key,
            &mut out,
        );
        let lost = |e: std::io::Error| SessionError::TargetLost {
            connection: target.target.name.clone(),
            detail: e.to_string(),
        };
        stream.write_all(&out).await.map_err(lost)?;
        stream.flush().await.map_err(lost)?;
        stream.shutdown().await.map_err(lost)
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, send).await {
        Ok(result) => result,
        Err(_) => Err(SessionError::TargetUnreachable {
            connection: target.target.name.clone(),
            address: target.target.address.clone(),
            detail: format!("cancel not delivered within {FORWARD_TIMEOUT:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pid: i32) -> CancelTarget {
        CancelTarget {
            session: RecordingId::new(),
            target: crate::gateway::PgTarget {
                name: "t".into(),
                address: "127.0.0.1:5432".into(),
                database: "d".into(),
                user: "u".into(),
                password: None,
                tls: crate::gateway::TargetTls::Disable,
                policy: "p".into(),
                sql_policy: std::sync::Arc::new(crate::policy::SqlPolicy::allow_all("p")),
                catalog: Default::default(),
                strict_recording: false,
                startup_options: Vec::new(),
            },
            process_id: pid,
            secret_key: 42,
        }
    }

    #[test]
    fn clients_get_the_target_pid_and_a_minted_secret() {
        let map = CancelMap::default();
        let (pid, secret) = map.mint(target(4711));
        assert_eq!(pid, 4711);
        assert_eq!(map.lookup((4711, secret)).map(|t| t.secret_key), Some(42));
        // The pair is the proof: the pid alone, or another secret, is not.
        assert!(map.lookup((4711, secret.wrapping_add(1))).is_none());
        // Two targets may have the same pid: both keys stay distinct.
        let other = map.mint(target(4711));
        assert_ne!(other, (pid, secret));
        map.forget((pid, secret));
        assert!(map.lookup((pid, secret)).is_none());
        assert!(map.lookup(other).is_some());
    }
}
