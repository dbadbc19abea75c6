//! Making events durable: the strict sessions' log append, the group
//! commit of every session's pending events into chunks, and seals.

use std::time::Instant;

use super::Recorder;
use super::chunks::chunk_groups;
use crate::recorder::now_micros;
use crate::recorder::wal::{self, WalRecord};
use crate::recording::{Outcome, RecordingId};
use crate::store::StoreError;
use crate::store::schema::{CHUNKS, Chunk, LOG_FOLDED, RECORDER_META, SEALS, SESSIONS, chain_hash};
use crate::store::seal::{Seal, header_hash};
use crate::store::verify::ChainState;

impl Recorder {
    /// Make the strict sessions' events durable: one log record per session
    /// (with every event of it not yet durable, so a session's records
    /// continue each other), one append, one fdatasync, then the waiting
    /// sessions go on. Should the log fail, a commit to redb stands in.
    pub(super) fn log_strict(&mut self) {
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
    pub(super) fn flush(&mut self) {
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

    pub(super) fn seal(
        &self,
        id: RecordingId,
        outcome: Outcome,
        state: ChainState,
        header: &[u8],
    ) -> Seal {
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
}
