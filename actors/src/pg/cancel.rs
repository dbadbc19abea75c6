//! Cancel keys: clients get a key minted by Gatehouse, never the target's.
//!
//! A CancelRequest arrives on a fresh connection with no authentication, so
//! the key is the only proof; minted keys are 64 random bits and map to the
//! target's own key, which never leaves the appliance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::recording::RecordingId;

/// Where a cancel for one session must go.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    pub session: RecordingId,
    pub address: String,
    pub process_id: i32,
    pub secret_key: i32,
}

#[derive(Clone, Default)]
pub struct CancelMap {
    inner: Arc<Mutex<HashMap<(i32, i32), CancelTarget>>>,
}

impl CancelMap {
    /// Mint a fresh key for a session and remember where it points.
    pub fn mint(&self, target: CancelTarget) -> (i32, i32) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let bits = uuid::Uuid::new_v4().as_u128();
            let key = (bits as i32, (bits >> 64) as i32);
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
pub async fn forward(target: &CancelTarget) -> std::io::Result<()> {
    let mut socket = TcpStream::connect(&target.address).await?;
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(
        target.process_id,
        target.secret_key,
        &mut out,
    );
    socket.write_all(&out).await?;
    socket.shutdown().await
}
