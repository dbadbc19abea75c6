//! Recovery at start: the strict sessions' logged events that redb does
//! not hold yet are replayed, and sessions a previous run left open are
//! sealed as interrupted.

use std::collections::HashMap;

use super::Recorder;
use super::chunks::{chunk_groups, last_event_at};
use crate::recorder::wal::WalRecord;
use crate::recording::{Event, Outcome, RecordingId, SessionHeader};
use crate::store::StoreError;
use crate::store::schema::{CHUNKS, Chunk, LOG_FOLDED, RECORDER_META, SEALS, SESSIONS, chain_hash};
use crate::store::verify::walk_chain;

impl Recorder {
    /// Append the log's events that redb does not hold yet (a crash came
    /// before the batched commit that would have folded them in).
    /// The log's generations up to `folded` are marked folded in the same
    /// transaction.
    pub(super) fn replay(
        &mut self,
        records: Vec<WalRecord>,
        folded: u64,
    ) -> Result<(), StoreError> {
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
    pub(super) fn mark_interrupted(&mut self) -> Result<(), StoreError> {
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
}
