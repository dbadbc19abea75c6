//! Feeds: bounded queues from the runtime to the consoles watching it.
//!
//! The registry, the approval broker and the recorder publish what
//! operators want to see (sessions starting and ending, approvals, a
//! watched session's events) to every console that subscribed. A console
//! may be slow, stuck behind a stalled SSH window, or gone; none of that
//! may slow a session. So a publisher never waits: it offers the item,
//! and when the console's queue is full the item is dropped and counted.
//! The console shows the count, and asks for a fresh snapshot when it
//! sees it grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// The publishing end of one console's queue.
#[derive(Debug)]
pub struct Feed<T> {
    tx: mpsc::Sender<T>,
    dropped: Arc<AtomicU64>,
}

impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Feed {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

/// The console's end: the items, and how many were dropped because the
/// queue was full.
#[derive(Debug)]
pub struct FeedReceiver<T> {
    pub rx: mpsc::Receiver<T>,
    pub dropped: Arc<AtomicU64>,
}

/// A feed holding at most `capacity` items the console has not taken yet.
pub fn feed<T>(capacity: usize) -> (Feed<T>, FeedReceiver<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        Feed {
            tx,
            dropped: dropped.clone(),
        },
        FeedReceiver { rx, dropped },
    )
}

impl<T> Feed<T> {
    /// Queue `item` without waiting. Returns false once the console is
    /// gone, so the publisher can forget this feed; a full queue drops the
    /// item, counts it, and keeps the feed.
    pub fn offer(&self, item: T) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<T> FeedReceiver<T> {
    /// Items dropped so far because this console fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Offer `item` to every feed, forgetting the ones whose console left.
pub fn publish<T: Clone>(feeds: &mut Vec<Feed<T>>, item: &T) {
    feeds.retain(|f| f.offer(item.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, mut rx) = feed::<u32>(2);
        assert!(tx.offer(1) && tx.offer(2) && tx.offer(3) && tx.offer(4));
        assert_eq!(rx.dropped(), 2);
        assert_eq!(rx.rx.try_recv().unwrap(), 1);
        assert_eq!(rx.rx.try_recv().unwrap(), 2);
        assert!(rx.rx.try_recv().is_err());
        drop(rx);
        assert!(!tx.offer(5), "a gone console is reported");
    }

    #[test]
    fn publishing_forgets_gone_consoles() {
        let (a, _keep) = feed::<u32>(4);
        let (b, gone) = feed::<u32>(4);
        drop(gone);
        let mut feeds = vec![a, b];
        publish(&mut feeds, &7);
        assert_eq!(feeds.len(), 1);
    }
}
