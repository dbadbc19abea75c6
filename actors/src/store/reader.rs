//! Reading recordings, from the daemon or from a second process.
//!
//! The daemon opens the database in `SingleWriter` mode, so a read-only
//! handle opened with the same mode by `gatehouse recordings ...` follows the
//! writer's commits while the daemon runs.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable};

use super::retention::PurgeRecord;
use super::schema::{CHUNKS, Chunk, ChunkError, PURGES, SEALS, SESSIONS};
use super::seal::Seal;
use super::verify::{self, Verdict};
use crate::recording::{Event, RecordingId, SessionHeader};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("recording database: {0}")]
    Database(#[from] redb::DatabaseError),
    #[error("recording database transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("recording database table: {0}")]
    Table(#[from] redb::TableError),
    #[error("recording database storage: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("recording database commit: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("stored header of {0} is unreadable: {1}")]
    Header(RecordingId, serde_json::Error),
    #[error("stored chunk {1} of {0} is unreadable: {2}")]
    Chunk(RecordingId, u32, ChunkError),
    #[error("no recording {0}")]
    NotFound(RecordingId),
}

/// A table, or `None` if nothing was ever written to it (a fresh store).
pub(super) fn existing<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One session as stored, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecording {
    pub id: RecordingId,
    pub header: Vec<u8>,
    pub chunks: Vec<(u32, Vec<u8>)>,
    pub seal: Option<Vec<u8>>,
}

impl RawRecording {
    pub fn verify(&self, public_key: &[u8]) -> Verdict {
        let seal: Option<Seal> = match &self.seal {
            None => None,
            Some(bytes) => match serde_json::from_slice(bytes) {
                Ok(seal) => Some(seal),
                Err(e) => {
                    return Verdict::Altered {
                        chunk: 0,
                        detail: format!("the seal is unreadable: {e}"),
                    };
                }
            },
        };
        verify::verify(
            self.id,
            &self.header,
            &self.chunks,
            seal.as_ref(),
            public_key,
        )
    }
}

/// Read-only access to `recordings.redb`.
pub struct RecordingStore {
    pub(super) db: redb::ReadOnlyDatabase,
}

impl RecordingStore {
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .set_cache_size(super::READER_CACHE_BYTES)
            .open_read_only(path)?;
        Ok(RecordingStore { db })
    }

    /// Every session header, oldest first (ids are time-ordered).
    pub fn sessions(&self) -> Result<Vec<SessionHeader>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(table) = existing(&txn, SESSIONS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let id = RecordingId(uuid::Uuid::from_u128(k.value()));
            out.push(serde_json::from_slice(v.value()).map_err(|e| StoreError::Header(id, e))?);
        }
        Ok(out)
    }

    pub fn header(&self, id: RecordingId) -> Result<SessionHeader, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let v = table.get(id.0.as_u128())?.ok_or(StoreError::NotFound(id))?;
        serde_json::from_slice(v.value()).map_err(|e| StoreError::Header(id, e))
    }

    /// All events of a session, in order.
    pub fn events(&self, id: RecordingId) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(table) = existing(&txn, CHUNKS)? else {
            return Ok(Vec::new());
        };
        let key = id.0.as_u128();
        let mut out = Vec::new();
        for row in table.range((key, 0)..=(key, u32::MAX))? {
            let (k, v) = row?;
            let n = k.value().1;
            let chunk = Chunk::decode(v.value()).map_err(|e| StoreError::Chunk(id, n, e))?;
            out.extend(chunk.events().map_err(|e| StoreError::Chunk(id, n, e))?);
        }
        Ok(out)
    }

    /// A session exactly as stored: header bytes, chunk bytes, seal bytes.
    /// Verification and archives work on these, never on re-encoded data.
    pub fn raw(&self, id: RecordingId) -> Result<RawRecording, StoreError> {
        let txn = self.db.begin_read()?;
        let key = id.0.as_u128();
        let header = {
            let table = txn.open_table(SESSIONS)?;
            let v = table.get(key)?.ok_or(StoreError::NotFound(id))?;
            v.value().to_vec()
        };
        let mut chunks = Vec::new();
        if let Some(table) = existing(&txn, CHUNKS)? {
            for row in table.range((key, 0)..=(key, u32::MAX))? {
                let (k, v) = row?;
                chunks.push((k.value().1, v.value().to_vec()));
            }
        }
        let seal = match existing(&txn, SEALS)? {
            Some(table) => table.get(key)?.map(|v| v.value().to_vec()),
            None => None,
        };
        Ok(RawRecording {
            id,
            header,
            chunks,
            seal,
        })
    }

    /// Recompute a session's chain and check it against its seal, using
    /// the appliance's public key.
    pub fn verify(&self, id: RecordingId, public_key: &[u8]) -> Result<Verdict, StoreError> {
        Ok(self.raw(id)?.verify(public_key))
    }

    /// The purge audit log, oldest first.
    pub fn purges(&self) -> Result<Vec<PurgeRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(table) = existing(&txn, PURGES)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Header(RecordingId(uuid::Uuid::nil()), e))?,
            );
        }
        Ok(out)
    }

    /// Resolve a full id or a unique prefix of one.
    pub fn resolve(&self, text: &str) -> Result<RecordingId, StoreError> {
        if let Ok(id) = text.parse() {
            return Ok(id);
        }
        let matches: Vec<_> = self
            .sessions()?
            .into_iter()
            .filter(|h| h.id.to_string().starts_with(text))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.id),
            _ => Err(StoreError::NotFound(RecordingId(uuid::Uuid::nil()))),
        }
    }
}
