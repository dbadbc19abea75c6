//! The recorder thread: pending events per session, group commits into
//! chunks, seals at session end, the strict sessions' write-ahead log
//! (replayed at start), interrupted sessions at start, retention.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::wal::{self, Wal, WalRecord};
use super::{
    INBOX_CAPACITY, RecorderConfig, RecorderHandle, RecorderMsg, RecorderStatus, now_micros,
};
use crate::feed::{Feed, publish};
use crate::recording::{Direction, Event, EventKind, Outcome, RecordingId, SessionHeader};
use crate::store::StoreError;
use crate::store::retention::{self, Criteria, PurgeRecord};
use crate::store::schema::{CHUNKS, Chunk, LOG_FOLDED, RECORDER_META, SEALS, SESSIONS, chain_hash};
use crate::store::seal::{Seal, SigningKey, header_hash};
use crate::store::verify::{ChainState, walk_chain};

/// Raw bytes of pending events after which a session's chunk is cut early,
/// keeping chunks well under `MAX_CHUNK_RAW` and memory per session bounded.
const CHUNK_TARGET: usize = 1 << 20;

/// How often age and size retention run while the daemon is up.
const RETENTION_PERIOD: Duration = Duration::from_secs(600);

/// Longest the recorder sleeps between inbox checks: bounds how late a
/// `Flush` request or a session end is noticed.
const MAX_TICK: Duration = Duration::from_millis(10);

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

/// Time of the last event in stored chunks, if they decode.
fn last_event_at(stored: &[(u32, Vec<u8>)]) -> Option<i64> {
    let (_, bytes) = stored.last()?;
    Chunk::decode(bytes)
        .ok()?
        .events()
        .ok()?
        .last()
        .map(|e| e.at)
}

/// Consecutive runs of events of about `CHUNK_TARGET` each (a single
/// larger event gets a run of its own; recorded strings are capped, so even
/// fully escaped its JSON stays far below `MAX_CHUNK_RAW`).
fn chunk_groups(events: &[Event]) -> Vec<&[Event]> {
    let mut groups = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let n = approx_size(&e.kind);
        if size > 0 && size + n > CHUNK_TARGET {
            groups.push(&events[start..i]);
            start = i;
            size = 0;
        }
        size += n;
    }
    groups.push(&events[start..]);
    groups
}

fn approx_size(kind: &EventKind) -> usize {
    match kind {
        EventKind::Query { sql } | EventKind::Parse { sql, .. } => sql.len() + 16,
        EventKind::Error { message, .. } | EventKind::Notice { message, .. } => message.len() + 32,
        EventKind::Notification { payload, .. } => payload.len() + 32,
        EventKind::Row { values }
        | EventKind::Bind { params: values, .. }
        | EventKind::FunctionCall { args: values, .. } => {
            values
                .iter()
                .map(|v| v.as_ref().map_or(1, |s| s.len() + 2))
                .sum::<usize>()
                + 8
        }
        EventKind::Columns { names } => names.iter().map(|n| n.len() + 1).sum::<usize>() + 8,
        EventKind::SshData { data, .. } => data.len() + 48,
        _ => 32,
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

    /// Append the log's events that redb does not hold yet (a crash came
    /// before the batched commit that would have folded them in).
    /// The log's generations up to `folded` are marked folded in the same
    /// transaction.
    fn replay(&mut self, records: Vec<WalRecord>, folded: u64) -> Result<(), StoreError> {
        // Per session, in log order: its latest header and all its events.
        let mut sessions: Vec<(SessionHeader, Vec<Event>)> = Vec::new();
        let mut index: HashMap<RecordingId, usize> = HashMap::new();
        for record in records {
            let id = record.header.id;
            match index.get(&id) {
                Some(&i) => {
                    sessions[i].0 = record.header;
                    sessions[i].1.extend(record.events);
                }
                None => {
                    index.insert(id, sessions.len());
                    sessions.push((record.header, record.events));
                }
            }
        }
        let txn = self.db.begin_write()?;
        let mut replayed = 0u64;
        {
            let mut stored_sessions = txn.open_table(SESSIONS)?;
            let mut chunks = txn.open_table(CHUNKS)?;
            for (header, events) in sessions {
                let id = header.id;
                let key = id.0.as_u128();
                let ended = redb::ReadableTable::get(&stored_sessions, key)?
                    .and_then(|v| serde_json::from_slice::<SessionHeader>(v.value()).ok())
                    .is_some_and(|h| h.outcome.is_some());
                if ended {
                    continue;
                }
                let mut stored = Vec::new();
                for row in redb::ReadableTable::range(&chunks, (key, 0)..=(key, u32::MAX))? {
                    let (k, v) = row?;
                    stored.push((k.value().1, v.value().to_vec()));
                }
                let mut state = match walk_chain(&stored) {
                    Ok(state) => state,
                    Err((chunk, detail)) => {
                        tracing::error!(session = %id, chunk, "logged events not replayed: the stored chain does not verify ({detail})");
                        continue;
                    }
                };
                // Events redb already has are skipped; the rest must
                // continue its numbering exactly.
                let mut fresh = Vec::new();
                for e in events {
                    if e.seq < state.events + fresh.len() as u64 {
                        continue;
                    }
                    if e.seq != state.events + fresh.len() as u64 {
                        tracing::error!(session = %id, seq = e.seq, "logged events stop continuing the recording; the rest is not replayed");
                        break;
                    }
                    fresh.push(e);
                }
                if fresh.is_empty() {
                    continue;
                }
                let bytes = serde_json::to_vec(&header).map_err(|e| StoreError::Header(id, e))?;
                stored_sessions.insert(key, bytes.as_slice())?;
                for group in chunk_groups(&fresh) {
                    let chunk = Chunk::seal_with(&mut self.sealer, state.last_hash, group)
                        .and_then(|c| c.encode())
                        .map_err(|e| StoreError::Chunk(id, state.chunks, e))?;
                    chunks.insert((key, state.chunks), chunk.as_slice())?;
                    state.chunks += 1;
                    state.events += group.len() as u64;
                    state.last_hash = chain_hash(&chunk);
                }
                replayed += fresh.len() as u64;
            }
            txn.open_table(RECORDER_META)?.insert(LOG_FOLDED, folded)?;
        }
        txn.commit()?;
        if replayed > 0 {
            tracing::warn!(
                events = replayed,
                "strict recordings' events replayed from the log after an unclean stop"
            );
        }
        Ok(())
    }

    /// Seal every session a previous run left open as `interrupted`, over
    /// the chunks that were durable. A chain that no longer verifies is left
    /// unsealed (and logged) so `verify` reports it rather than a seal
    /// vouching for it.
    fn mark_interrupted(&mut self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let chunks = txn.open_table(CHUNKS)?;
            let mut seals = txn.open_table(SEALS)?;
            let mut open = Vec::new();
            for row in redb::ReadableTable::iter(&sessions)? {
                let (k, v) = row?;
                if let Ok(h) = serde_json::from_slice::<SessionHeader>(v.value())
                    && h.outcome.is_none()
                {
                    open.push((k.value(), h));
                }
            }
            for (key, mut h) in open {
                let mut stored = Vec::new();
                for row in redb::ReadableTable::range(&chunks, (key, 0)..=(key, u32::MAX))? {
                    let (k, v) = row?;
                    stored.push((k.value().1, v.value().to_vec()));
                }
                tracing::warn!(session = %h.id, "session left open by a previous run; marked interrupted");
                h.outcome = Some(Outcome::Interrupted);
                h.reason = Some("appliance stopped without ending the session".into());
                let chain = walk_chain(&stored);
                if let Ok(state) = &chain {
                    h.event_count = state.events;
                }
                // The end is unknown; the last durable event is the best
                // bound, so retention can age the session out like others.
                h.ended_at = last_event_at(&stored).or(Some(h.started_at));
                let bytes = serde_json::to_vec(&h).map_err(|e| StoreError::Header(h.id, e))?;
                sessions.insert(key, bytes.as_slice())?;
                match chain {
                    Ok(state) => {
                        let seal = self.seal(h.id, Outcome::Interrupted, state, &bytes);
                        let seal =
                            serde_json::to_vec(&seal).map_err(|e| StoreError::Header(h.id, e))?;
                        seals.insert(key, seal.as_slice())?;
                    }
                    Err((chunk, detail)) => tracing::error!(
                        session = %h.id, chunk, "interrupted session's chain does not verify ({detail}); left unsealed"
                    ),
                }
            }
        }
        txn.commit()?;
        Ok(())
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

    fn seal(&self, id: RecordingId, outcome: Outcome, state: ChainState, header: &[u8]) -> Seal {
        let mut seal = Seal {
            id,
            outcome,
            final_hash: state.last_hash,
            chunks: state.chunks,
            events: state.events,
            bytes: state.bytes,
            header_hash: header_hash(header),
            signature: Vec::new(),
        };
        self.key.sign(&mut seal);
        seal
    }

    /// The recorder polls its inbox on a short tick instead of blocking on
    /// it: a blocking receive would wake this thread for every batch a
    /// session sends (two per query), and those wake-ups cost more CPU than
    /// the recording itself. Senders only push onto the queue.
    fn run(mut self, rx: flume::Receiver<RecorderMsg>) {
        let tick = (self.config.flush_interval / 4).clamp(Duration::from_millis(1), MAX_TICK);
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut last_retention = Instant::now();
        let closed_reply = loop {
            if last_retention.elapsed() >= RETENTION_PERIOD {
                self.apply_retention();
                last_retention = Instant::now();
            }
            let mut force = false;
            let mut shutdown = None;
            let mut more_queued = false;
            loop {
                match rx.try_recv() {
                    Ok(RecorderMsg::Shutdown(reply)) => {
                        shutdown = Some(reply);
                        break;
                    }
                    Ok(msg) => {
                        force |= self.accept(msg, &mut waiters);
                        // A session's pending events reached a chunk's worth:
                        // write before taking more, keeping chunks bounded.
                        // (Durability requests only ask for a flush after the
                        // drain, so they keep sharing one commit.)
                        if std::mem::take(&mut self.chunk_full) {
                            more_queued = true;
                            break;
                        }
                    }
                    Err(flume::TryRecvError::Empty) => break,
                    Err(flume::TryRecvError::Disconnected) => {
                        shutdown = Some(oneshot::channel().0);
                        break;
                    }
                }
            }
            // Strict sessions first: their statements wait on this.
            if !self.durable.is_empty() {
                self.log_strict();
            }
            let due = self
                .oldest_pending
                .is_some_and(|t| t.elapsed() >= self.config.flush_interval);
            if force || due || !waiters.is_empty() || shutdown.is_some() {
                self.flush();
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            if let Some(reply) = shutdown {
                break reply;
            }
            // Woken early by strict-mode sessions; otherwise a short nap.
            if !more_queued {
                std::thread::park_timeout(tick);
            }
        };
        if !self.live.is_empty() {
            tracing::warn!(
                sessions = self.live.len(),
                "recorder stopping with sessions still open; they will be marked interrupted"
            );
        }
        drop(self);
        tracing::info!("recording store closed");
        let _ = closed_reply.send(());
    }

    /// Take one message; true when it asks for an immediate flush.
    fn accept(&mut self, msg: RecorderMsg, waiters: &mut Vec<oneshot::Sender<()>>) -> bool {
        match msg {
            RecorderMsg::Header(h) => {
                let id = h.id;
                match self.live.get_mut(&id) {
                    Some(live) => {
                        let count = live.header.event_count;
                        live.header = *h;
                        live.header.event_count = count;
                        live.header_dirty = true;
                    }
                    None => {
                        self.live.insert(id, Live::new(*h));
                    }
                }
                self.oldest_pending.get_or_insert_with(Instant::now);
                false
            }
            RecorderMsg::Events(id, events) => {
                let Some(live) = self.live.get_mut(&id) else {
                    tracing::error!(session = %id, "events for a session without a header");
                    return false;
                };
                for e in events {
                    live.push(e.at, e.dir, e.kind);
                }
                self.oldest_pending.get_or_insert_with(Instant::now);
                self.chunk_full |= live.pending_bytes > CHUNK_TARGET;
                self.chunk_full
            }
            RecorderMsg::Close {
                id,
                outcome,
                reason,
                at,
            } => {
                let Some(live) = self.live.get_mut(&id) else {
                    return false;
                };
                live.push(
                    at,
                    Direction::Gateway,
                    EventKind::End {
                        outcome,
                        reason: reason.clone(),
                    },
                );
                live.header.ended_at = Some(at);
                live.header.event_count = live.next_seq;
                live.header.outcome = Some(outcome);
                live.header.reason = reason;
                live.header_dirty = true;
                live.closed = true;
                true
            }
            RecorderMsg::Durable(id, events, reply) => {
                let Some(live) = self.live.get_mut(&id) else {
                    let _ = reply.send(Err("no open recording for this session".into()));
                    return false;
                };
                for e in events {
                    live.push(e.at, e.dir, e.kind);
                }
                self.durable.push(reply);
                if !self.to_log.contains(&id) {
                    self.to_log.push(id);
                }
                self.oldest_pending.get_or_insert_with(Instant::now);
                // Made durable through the log after this drain, not by a
                // commit of its own.
                false
            }
            RecorderMsg::Flush(reply) => {
                waiters.push(reply);
                true
            }
            RecorderMsg::Purge {
                criteria,
                by,
                reply,
            } => {
                // Seal what has ended first, so it can be considered.
                self.flush();
                let _ = reply.send(self.purge(criteria, &by).map_err(|e| e.to_string()));
                false
            }
            RecorderMsg::Watch { id, feed, reply } => {
                let durable = self.live.get_mut(&id).map(|live| live.watch(feed));
                let _ = reply.send(durable);
                false
            }
            RecorderMsg::Status(reply) => {
                let mut status = self.status.clone();
                status.open_sessions = self.live.len();
                status.pending_events = self.live.values().map(|l| l.pending.len()).sum();
                status.log_bytes = self.wal.len();
                let _ = reply.send(status);
                false
            }
            // Handled by the run loop before messages reach here.
            RecorderMsg::Shutdown(reply) => {
                waiters.push(reply);
                true
            }
        }
    }

    /// Make the strict sessions' events durable: one log record per session
    /// (with every event of it not yet durable, so a session's records
    /// continue each other), one append, one fdatasync, then the waiting
    /// sessions go on. Should the log fail, a commit to redb stands in.
    fn log_strict(&mut self) {
        let mut bytes = Vec::new();
        let mut advanced = Vec::new();
        let mut encoded = Ok(());
        for id in self.to_log.drain(..) {
            let Some(live) = self.live.get_mut(&id) else {
                continue;
            };
            let events = live.unlogged();
            if events.is_empty() {
                continue;
            }
            let record = WalRecord {
                header: live.header.clone(),
                events: events.to_vec(),
            };
            if let Err(e) = wal::encode(self.wal.generation(), &record, &mut bytes) {
                encoded = Err(std::io::Error::other(e));
                break;
            }
            advanced.push((id, live.logged_upto));
            live.logged_upto = live.next_seq;
        }
        let result = encoded.and_then(|()| {
            if bytes.is_empty() {
                Ok(())
            } else {
                self.wal.append(&bytes)
            }
        });
        match result {
            Ok(()) => {
                self.status.log_appends += u64::from(!bytes.is_empty());
                for reply in self.durable.drain(..) {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "recording log append failed; committing to the store instead");
                self.status.last_error = Some((now_micros(), format!("recording log: {e}")));
                for (id, upto) in advanced {
                    if let Some(live) = self.live.get_mut(&id) {
                        live.logged_upto = upto;
                    }
                }
                // Answers the waiting sessions with the commit's result.
                self.flush();
            }
        }
    }

    /// Commit what is pending. On failure the events stay pending so the
    /// next flush retries them; strict sessions waiting on this commit are
    /// told it failed and refuse their statement (batched ones go on, and
    /// the failure is logged).
    fn flush(&mut self) {
        self.oldest_pending = None;
        let result = self.commit();
        match &result {
            Err(e) => {
                tracing::error!(error = %e, "recording flush failed");
                self.oldest_pending = Some(Instant::now());
                self.status.failed_flushes += 1;
                self.status.last_error = Some((now_micros(), e.to_string()));
            }
            Ok(committed) => {
                self.status.last_flush = Some(now_micros());
                self.status.commits += u64::from(*committed);
            }
        }
        for reply in self.durable.drain(..) {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        let next = self.wal.generation() + 1;
        if result.is_ok() {
            self.live.retain(|_, l| !l.closed);
            // Everything the log held is in redb now, its generation
            // marked folded.
            for live in self.live.values_mut() {
                live.logged_upto = live.next_seq;
            }
            if self.wal.touched() {
                self.wal.restart(next);
            }
        } else if self.wal.touched() {
            // The failed commit may still have marked this generation
            // folded; what is logged from now on must not be mistaken
            // for it.
            self.wal.continue_as(next);
        }
    }

    /// Write what is pending in one transaction; false when there was
    /// nothing to write.
    fn commit(&mut self) -> Result<bool, StoreError> {
        // A failed append leaves bytes of the generation too.
        let log = self.wal.touched();
        if !log
            && !self
                .live
                .values()
                .any(|l| l.header_dirty || !l.pending.is_empty())
        {
            return Ok(false);
        }
        let txn = self.db.begin_write()?;
        // Chunk numbers and hashes advance only once the commit succeeded.
        let mut advanced = Vec::new();
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut seals = txn.open_table(SEALS)?;
            for (id, live) in &self.live {
                let key = id.0.as_u128();
                let mut state = ChainState {
                    chunks: live.next_chunk,
                    events: live.next_seq - live.pending.len() as u64,
                    bytes: live.bytes,
                    last_hash: live.prev_hash,
                };
                if !live.pending.is_empty() {
                    // One batch from a session can be large (a thousand
                    // 64 KiB rows); cut it so every chunk stays readable.
                    for group in chunk_groups(&live.pending) {
                        let chunk = Chunk::seal_with(&mut self.sealer, state.last_hash, group)
                            .and_then(|c| c.encode())
                            .map_err(|e| StoreError::Chunk(*id, state.chunks, e))?;
                        chunks.insert((key, state.chunks), chunk.as_slice())?;
                        state.chunks += 1;
                        state.events += group.len() as u64;
                        state.bytes += chunk.len() as u64;
                        state.last_hash = chain_hash(&chunk);
                    }
                    advanced.push((*id, state));
                }
                // Headers change rarely (identity learned, session end);
                // rewriting them on every commit would double the writes.
                if live.header_dirty {
                    let bytes =
                        serde_json::to_vec(&live.header).map_err(|e| StoreError::Header(*id, e))?;
                    sessions.insert(key, bytes.as_slice())?;
                    if live.closed {
                        let outcome = live.header.outcome.unwrap_or(Outcome::Closed);
                        let seal = self.seal(*id, outcome, state, &bytes);
                        let seal =
                            serde_json::to_vec(&seal).map_err(|e| StoreError::Header(*id, e))?;
                        seals.insert(key, seal.as_slice())?;
                    }
                }
            }
            if log {
                txn.open_table(RECORDER_META)?
                    .insert(LOG_FOLDED, self.wal.generation())?;
            }
        }
        txn.commit()?;
        for (id, state) in advanced {
            if let Some(live) = self.live.get_mut(&id) {
                live.prev_hash = state.last_hash;
                live.next_chunk = state.chunks;
                live.bytes = state.bytes;
                live.pending.clear();
                live.pending_bytes = 0;
            }
        }
        for live in self.live.values_mut() {
            live.header_dirty = false;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
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
