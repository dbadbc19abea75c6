//! The Recorder: the single writer of `recordings.redb`.
//!
//! It runs on its own thread because redb commits block on fsync. Sessions
//! send it batches of events through a bounded channel (its one typed inbox,
//! [`RecorderMsg`]); it assigns sequence numbers in arrival order, groups
//! pending events per session and commits them as zstd chunks in one write
//! transaction per flush — group commit across all sessions. A flush happens
//! when the oldest pending event is `flush_interval` old, when a session's
//! pending events grow past `CHUNK_TARGET`, when a session ends, or when asked.
//!
//! Strict sessions do not wait for a commit: their events are appended to
//! a write-ahead log with group `fdatasync` (`wal`), folded into redb by
//! the next batched commit, and replayed from the log after a crash.
//!
//! Layout: this module holds the inbox ([`RecorderMsg`]), the handle
//! sessions use and the configuration; `writer` holds the thread itself
//! (batching, commits, seals, retention); `wal` the strict sessions' log.

mod wal;
mod writer;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

pub use writer::Recorder;

use crate::feed::Feed;
use crate::recording::{Direction, Event, EventKind, Outcome, RecordingId, SessionHeader};
use crate::store::retention::{Criteria, PurgeRecord, Retention};

/// Batches in flight between sessions and the recorder. A full inbox makes
/// sessions wait (back-pressure) instead of growing memory without bound.
const INBOX_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// How long an event may wait before it is durable.
    pub flush_interval: Duration,
    /// Age and size limits applied at start and every `RETENTION_PERIOD`.
    pub retention: Retention,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            flush_interval: Duration::from_millis(200),
            retention: Retention::default(),
        }
    }
}

/// An event before the recorder numbered it.
#[derive(Debug)]
pub struct PendingEvent {
    pub at: i64,
    pub dir: Direction,
    pub kind: EventKind,
}

/// The recorder's inbox.
#[derive(Debug)]
pub enum RecorderMsg {
    /// Create or replace a session's header (identity learned, etc.).
    /// Boxed: a header is several times the size of the other messages.
    Header(Box<SessionHeader>),
    Events(RecordingId, Vec<PendingEvent>),
    /// The session ended; its End event is appended and it is flushed.
    Close {
        id: RecordingId,
        outcome: Outcome,
        reason: Option<String>,
        at: i64,
    },
    /// Events that must be durable before the session forwards the
    /// statement they describe (strict recording). Replies once committed,
    /// or with the reason the commit failed.
    Durable(
        RecordingId,
        Vec<PendingEvent>,
        oneshot::Sender<Result<(), String>>,
    ),
    /// Make everything received so far durable, then reply.
    Flush(oneshot::Sender<()>),
    /// Remove sealed recordings now (operator request), logging the purge.
    Purge {
        criteria: Criteria,
        by: String,
        reply: oneshot::Sender<Result<PurgeRecord, String>>,
    },
    /// The recorder's health, for `recordings status`.
    Status(oneshot::Sender<RecorderStatus>),
    /// A console watches a live session: every event the recorder numbers
    /// from now on is offered to `feed` (a full feed drops and counts, the
    /// recorder never waits). Events received but not yet durable are
    /// offered at once; the reply is how many events are durable (read
    /// those from the store), or `None` when the session has no open
    /// recording (it ended: read it all from the store).
    Watch {
        id: RecordingId,
        feed: Feed<Event>,
        reply: oneshot::Sender<Option<u64>>,
    },
    /// Flush, close the database cleanly and stop; replies when closed, so
    /// a reader opened afterwards finds a database that needs no repair.
    Shutdown(oneshot::Sender<()>),
}

/// What `recordings status` shows.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RecorderStatus {
    /// Sessions with a header in memory (live, or ended and not yet sealed).
    pub open_sessions: usize,
    /// Events received and not yet durable.
    pub pending_events: usize,
    /// Flushes that failed since start; each was retried.
    pub failed_flushes: u64,
    /// Write transactions committed since start (each one fsync), so the
    /// events per commit of group commit can be read off.
    #[serde(default)]
    pub commits: u64,
    /// Appends to the strict sessions' log since start (each one
    /// fdatasync, shared by the sessions waiting at that moment).
    #[serde(default)]
    pub log_appends: u64,
    /// Bytes in the log now: strict events not yet folded into redb.
    #[serde(default)]
    pub log_bytes: u64,
    /// The most recent failure: when (unix µs) and why.
    pub last_error: Option<(i64, String)>,
    /// When the most recent flush succeeded (unix µs).
    pub last_flush: Option<i64>,
}

/// A cheap, cloneable handle to the recorder.
#[derive(Clone)]
pub struct RecorderHandle {
    pub(super) tx: flume::Sender<RecorderMsg>,
    /// The recorder thread, unparked when a session waits on durability.
    pub(super) thread: std::thread::Thread,
}

impl RecorderHandle {
    pub async fn send(&self, msg: RecorderMsg) {
        if self.tx.send_async(msg).await.is_err() {
            tracing::error!("recorder is gone; event dropped");
        }
    }

    /// For paths that cannot await (drop, sync code): waits if the inbox is
    /// full only when called off the async runtime.
    pub fn send_now(&self, msg: RecorderMsg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(flume::TrySendError::Full(msg)) => {
                // Keep the record: hand it to a helper thread that waits.
                let tx = self.tx.clone();
                std::thread::spawn(move || {
                    let _ = tx.send(msg);
                });
            }
            Err(flume::TrySendError::Disconnected(_)) => {
                tracing::error!("recorder is gone; event dropped")
            }
        }
    }

    /// Record `events` and wait until they are durable (strict mode). All
    /// sessions waiting at the same moment share one commit (group commit).
    pub async fn record_durably(
        &self,
        id: RecordingId,
        events: Vec<PendingEvent>,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send_async(RecorderMsg::Durable(id, events, tx))
            .await
            .map_err(|_| "the recorder is not running".to_owned())?;
        self.thread.unpark();
        rx.await
            .map_err(|_| "the recorder is not running".to_owned())?
    }

    /// Ask the recorder for its health.
    pub async fn status(&self) -> Option<RecorderStatus> {
        let (tx, rx) = oneshot::channel();
        self.send(RecorderMsg::Status(tx)).await;
        self.thread.unpark();
        rx.await.ok()
    }

    /// Purge sealed recordings now.
    pub async fn purge(&self, criteria: Criteria, by: String) -> Result<PurgeRecord, String> {
        let (tx, rx) = oneshot::channel();
        self.send(RecorderMsg::Purge {
            criteria,
            by,
            reply: tx,
        })
        .await;
        self.thread.unpark();
        rx.await
            .map_err(|_| "the recorder is not running".to_owned())?
    }

    /// Watch a live session's events (see [`RecorderMsg::Watch`]).
    pub async fn watch(&self, id: RecordingId, feed: Feed<Event>) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.send(RecorderMsg::Watch {
            id,
            feed,
            reply: tx,
        })
        .await;
        self.thread.unpark();
        rx.await.ok().flatten()
    }

    /// Flush and close the store; later sends are dropped with an error log.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(RecorderMsg::Shutdown(tx)).await;
        let _ = rx.await;
    }

    /// Wait until everything sent so far is durable.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(RecorderMsg::Flush(tx)).await;
        let _ = rx.await;
    }
}

/// Unix time now, in microseconds.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
