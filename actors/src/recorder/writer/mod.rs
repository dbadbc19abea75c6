//! The recorder thread: pending events per session, group commits into
//! chunks, seals at session end, the strict sessions' write-ahead log
//! (replayed at start), interrupted sessions at start, retention.
//!
//! # Layout
//!
//! - `mod.rs` — [`Recorder`] and `start` (open the store, recover, spawn
//!   the thread); `Live`, one open session's pending events; retention
//!   purges; `CHUNK_TARGET`; the chunk-size tests.
//! - `chunks.rs` — sizing pending events and cutting them into chunks.
//! - `recovery.rs` — at start: the log's events replayed into redb,
//!   sessions a previous run left open sealed as interrupted.
//! - `inbox.rs` — the thread's loop: polling the inbox on a tick, taking
//!   each message, deciding when to flush.
//! - `commit.rs` — making events durable: the strict sessions' log
//!   append, the group commit into chunks, seals.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use tokio::sync::oneshot;

use super::wal::{Wal, WalRecord};
use super::{INBOX_CAPACITY, RecorderConfig, RecorderHandle, RecorderStatus, now_micros};
use crate::feed::{Feed, publish};
use crate::recording::{Direction, Event, EventKind, RecordingId, SessionHeader};
use crate::store::StoreError;
use crate::store::retention::{self, Criteria, PurgeRecord};
use crate::store::schema::{LOG_FOLDED, RECORDER_META};
use crate::store::seal::SigningKey;

mod chunks;
mod commit;
mod inbox;
mod recovery;

use chunks::approx_size;

/// Raw bytes of pending events after which a session's chunk is cut early,
/// keeping chunks well under `MAX_CHUNK_RAW` and memory per session bounded.
const CHUNK_TARGET: usize = 1 << 20;

struct Live {
    header: SessionHeader,
    header_dirty: bool,
    pending: Vec<Event>,
    pending_bytes: usize,
    next_seq: u64,
    next_chunk: u32,
    prev_hash: [u8; 32],
    /// Stored chunk bytes so far, for the seal.
    bytes: u64,
    closed: bool,
    /// Events numbered below this are durable, in redb or in the log;
    /// the session's next log record starts here.
    logged_upto: u64,
    /// Consoles watching this session live.
    watchers: Vec<Feed<Event>>,
}

impl Live {
    fn new(header: SessionHeader) -> Self {
        Live {
            header,
            header_dirty: true,
            pending: Vec::new(),
            pending_bytes: 0,
            next_seq: 0,
            next_chunk: 0,
            prev_hash: [0; 32],
            bytes: 0,
            closed: false,
            logged_upto: 0,
            watchers: Vec::new(),
        }
    }

    /// Pending events not yet durable anywhere.
    fn unlogged(&self) -> &[Event] {
        let first = self.next_seq - self.pending.len() as u64;
        let skip = self.logged_upto.saturating_sub(first) as usize;
        &self.pending[skip.min(self.pending.len())..]
    }

    fn push(&mut self, at: i64, dir: Direction, kind: EventKind) {
        self.pending_bytes += approx_size(&kind);
        let event = Event {
            seq: self.next_seq,
            at,
            dir,
            kind,
        };
        if !self.watchers.is_empty() {
            publish(&mut self.watchers, &event);
        }
        self.pending.push(event);
        self.next_seq += 1;
    }

    /// Start offering this session's events to `feed`: the pending ones
    /// now, the rest as they come. Returns how many are durable.
    fn watch(&mut self, feed: Feed<Event>) -> u64 {
        let durable = self.next_seq - self.pending.len() as u64;
        if self.pending.iter().all(|e| feed.offer(e.clone())) {
            self.watchers.push(feed);
        }
        durable
    }
}

pub struct Recorder {
    db: redb::Database,
    key: SigningKey,
    /// Strict-mode sessions waiting for their events to be durable.
    durable: Vec<oneshot::Sender<Result<(), String>>>,
    /// Sessions with strict events to append to the log this round.
    to_log: Vec<RecordingId>,
    wal: Wal,
    status: RecorderStatus,
    sealer: crate::store::schema::Sealer,
    /// Set when a session's pending events reached `CHUNK_TARGET`.
    chunk_full: bool,
    live: HashMap<RecordingId, Live>,
    config: RecorderConfig,
    oldest_pending: Option<Instant>,
}

impl Recorder {
    /// Open (or create) the store, mark sessions a previous run left open as
    /// interrupted, and start the recorder thread.
    pub fn start(
        path: &Path,
        config: RecorderConfig,
        key: SigningKey,
    ) -> Result<RecorderHandle, StoreError> {
        // redb's defaults are kept on purpose: a durable one-phase commit
        // (checksummed header) costs one fdatasync, which is what a strict
        // session waits for. Two-phase commit or quick-repair would add a
        // second fdatasync (and, for quick-repair, the allocator state) to
        // every commit; `Durability::None` would break the strict promise.
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .set_cache_size(crate::store::WRITER_CACHE_BYTES)
            .create(path)?;
        let (wal, logged) = Wal::open(&Wal::path_for(path))
            .map_err(|e| StoreError::Storage(redb::StorageError::Io(e)))?;
        let folded = {
            let txn = redb::ReadableDatabase::begin_read(&db)?;
            match txn.open_table(RECORDER_META) {
                Ok(meta) => redb::ReadableTable::get(&meta, LOG_FOLDED)?.map_or(0, |v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(e.into()),
            }
        };
        let mut recorder = Recorder {
            db,
            key,
            durable: Vec::new(),
            to_log: Vec::new(),
            wal,
            status: RecorderStatus::default(),
            chunk_full: false,
            sealer: crate::store::schema::Sealer::new()
                .map_err(|e| StoreError::Chunk(RecordingId(uuid::Uuid::nil()), 0, e))?,
            live: HashMap::new(),
            config,
            oldest_pending: None,
        };
        // What strict sessions were promised goes into redb before anything
        // else looks at the store; then those sessions are sealed as
        // interrupted like any other left open. Records of folded
        // generations are stale bytes of a log written in place.
        let newest = logged.iter().map(|(g, _)| *g).max().unwrap_or(0);
        let unfolded: Vec<WalRecord> = logged
            .into_iter()
            .filter(|(g, _)| *g > folded)
            .map(|(_, r)| r)
            .collect();
        if !unfolded.is_empty() {
            recorder.replay(unfolded, newest)?;
        }
        recorder
            .wal
            .clear(folded.max(newest) + 1)
            .map_err(|e| StoreError::Storage(redb::StorageError::Io(e)))?;
        recorder.mark_interrupted()?;
        recorder.apply_retention();
        let (tx, rx) = flume::bounded(INBOX_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || recorder.run(rx))
            .map_err(|e| StoreError::Storage(redb::StorageError::Io(e)))?
            .thread()
            .clone();
        Ok(RecorderHandle { tx, thread })
    }

    fn purge(&mut self, criteria: Criteria, by: &str) -> Result<PurgeRecord, StoreError> {
        let txn = self.db.begin_write()?;
        let live = |id| self.live.contains_key(&id);
        let record = retention::purge(&txn, criteria, by, now_micros(), &live)?;
        txn.commit()?;
        if !record.sessions.is_empty() {
            tracing::info!(
                by,
                sessions = record.sessions.len(),
                bytes = record.bytes,
                "recordings purged"
            );
        }
        Ok(record)
    }

    fn apply_retention(&mut self) {
        if let Some(criteria) = self.config.retention.criteria(now_micros())
            && let Err(e) = self.purge(criteria, "retention")
        {
            tracing::error!(error = %e, "retention purge failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chunks::chunk_groups;
    use super::*;
    use crate::recording::SshBytes;

    /// A bulk SSH transfer counted 32 bytes per 32 KiB event, so a
    /// session's pending events and its chunks grew with the transfer
    /// rate times the flush interval, towards chunks readers refuse
    /// (`MAX_CHUNK_RAW`).
    #[test]
    fn stream_bytes_count_towards_the_chunk_size() {
        let events: Vec<Event> = (0..256)
            .map(|seq| Event {
                seq,
                at: 0,
                dir: Direction::Target,
                kind: EventKind::SshData {
                    channel: 0,
                    stream: "stdout".into(),
                    data: SshBytes(vec![0; 32 << 10]),
                },
            })
            .collect();
        let groups = chunk_groups(&events);
        assert!(groups.len() >= 8, "{} groups", groups.len());
        for g in groups {
            let bytes: usize = g.iter().map(|e| approx_size(&e.kind)).sum();
            assert!(bytes <= CHUNK_TARGET, "{bytes}");
        }
    }
}
