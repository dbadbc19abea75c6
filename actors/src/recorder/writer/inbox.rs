//! The recorder thread's loop: the inbox polled on a short tick, each
//! message taken, and the decision when to flush.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{CHUNK_TARGET, Live, Recorder};
use crate::recorder::RecorderMsg;
use crate::recording::{Direction, EventKind};

/// How often age and size retention run while the daemon is up.
const RETENTION_PERIOD: Duration = Duration::from_secs(600);

/// Longest the recorder sleeps between inbox checks: bounds how late a
/// `Flush` request or a session end is noticed.
const MAX_TICK: Duration = Duration::from_millis(10);

impl Recorder {
    /// The recorder polls its inbox on a short tick instead of blocking on
    /// it: a blocking receive would wake this thread for every batch a
    /// session sends (two per query), and those wake-ups cost more CPU than
    /// the recording itself. Senders only push onto the queue.
    pub(super) fn run(mut self, rx: flume::Receiver<RecorderMsg>) {
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
}
