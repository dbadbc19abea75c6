//! Listing recordings without reading every header.
//!
//! Session keys are UUIDv7 ids created when the session starts, so the
//! `sessions` table is ordered by start time and a time window is a key
//! range: listing a day, or the newest page, reads only the headers it
//! shows (plus those a filter skips), however large the store. Ids carry
//! milliseconds and are taken a moment before the header's `started_at`,
//! so ranges are widened by [`CLOCK_MARGIN`] and the headers' own times
//! decide.

use redb::ReadableDatabase;

use super::reader::{RecordingStore, StoreError, existing};
use super::schema::{CHUNKS, Chunk, SESSIONS};
use crate::recording::{Event, RecordingId, SessionHeader};

/// How far a header's `started_at` may be from its id's time.
const CLOCK_MARGIN_MICROS: i64 = 1_000_000;
pub const CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The smallest key whose UUIDv7 time is at or after `micros`.
fn key_at(micros: i64) -> u128 {
    let ms = micros.max(0) / 1000;
    (ms as u128).min((1 << 48) - 1) << 80
}

/// A time window on `started_at` (unix µs): `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Window {
    fn contains(&self, at: i64) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at < t)
    }

    fn keys(&self) -> (u128, u128) {
        (
            self.from
                .map_or(0, |f| key_at(f.saturating_sub(CLOCK_MARGIN_MICROS))),
            self.to.map_or(u128::MAX, |t| {
                key_at(t.saturating_add(CLOCK_MARGIN_MICROS)).saturating_add(1 << 80)
            }),
        )
    }
}

/// One page of a newest-first listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Newest first.
    pub headers: Vec<SessionHeader>,
    /// Where the next (older) page starts, if there may be one.
    pub next: Option<RecordingId>,
    /// Headers read to fill this page (matching or not).
    pub scanned: usize,
}

impl RecordingStore {
    /// Sessions that started within `window`, oldest first.
    pub fn sessions_between(&self, window: Window) -> Result<Vec<SessionHeader>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(table) = existing(&txn, SESSIONS)? else {
            return Ok(Vec::new());
        };
        let (lo, hi) = window.keys();
        let mut out = Vec::new();
        for row in table.range(lo..hi)? {
            let (k, v) = row?;
            let h = decode(k.value(), v.value())?;
            if window.contains(h.started_at) {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// Up to `limit` headers in `window` that `keep` accepts, newest
    /// first, starting below `before` (a previous page's `next`). At most
    /// `max_scan` headers are read: a filter that matches little returns a
    /// short page with `next` set, and the caller asks again.
    pub fn page(
        &self,
        window: Window,
        before: Option<RecordingId>,
        limit: usize,
        max_scan: usize,
        keep: impl Fn(&SessionHeader) -> bool,
    ) -> Result<Page, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(table) = existing(&txn, SESSIONS)? else {
            return Ok(Page::default());
        };
        let (lo, mut hi) = window.keys();
        if let Some(b) = before {
            hi = hi.min(b.0.as_u128());
        }
        let mut page = Page::default();
        if lo >= hi {
            return Ok(page);
        }
        for row in table.range(lo..hi)?.rev() {
            let (k, v) = row?;
            if page.headers.len() >= limit || page.scanned >= max_scan {
                page.next = Some(RecordingId(uuid::Uuid::from_u128(k.value())));
                break;
            }
            page.scanned += 1;
            let h = decode(k.value(), v.value())?;
            if window.contains(h.started_at) && keep(&h) {
                page.headers.push(h);
            }
        }
        // `next` is exclusive: start the next page at the first unread key.
        if let Some(next) = page.next.as_mut() {
            *next = RecordingId(uuid::Uuid::from_u128(next.0.as_u128() + 1));
        }
        Ok(page)
    }

    /// The UTC days (unix µs of midnight) on which sessions started, in
    /// order, reading about one header per day.
    pub fn days(&self) -> Result<Vec<i64>, StoreError> {
        const DAY: i64 = 86_400_000_000;
        let txn = self.db.begin_read()?;
        let Some(table) = existing(&txn, SESSIONS)? else {
            return Ok(Vec::new());
        };
        let mut days = Vec::new();
        let mut from = 0u128;
        loop {
            // Within the margin of a boundary a key can belong to either
            // day: read on until a header past the last day found.
            let mut next_day = None;
            for row in table.range(from..)? {
                let (k, v) = row?;
                let day = decode(k.value(), v.value())?.started_at.div_euclid(DAY) * DAY;
                if days.last().is_none_or(|last| day > *last) {
                    next_day = Some(day);
                    break;
                }
            }
            let Some(day) = next_day else {
                return Ok(days);
            };
            days.push(day);
            from = key_at(day + DAY - CLOCK_MARGIN_MICROS);
        }
    }

    /// The first `max` events of a session, in order, and whether there
    /// were more: what a replay loads, bounded however long the session.
    pub fn events_head(
        &self,
        id: RecordingId,
        max: usize,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let txn = self.db.begin_read()?;
        let Some(table) = existing(&txn, CHUNKS)? else {
            return Ok((Vec::new(), false));
        };
        let key = id.0.as_u128();
        let mut out = Vec::new();
        for row in table.range((key, 0)..=(key, u32::MAX))? {
            if out.len() >= max {
                return Ok((out, true));
            }
            let (k, v) = row?;
            let n = k.value().1;
            let chunk = Chunk::decode(v.value()).map_err(|e| StoreError::Chunk(id, n, e))?;
            out.extend(chunk.events().map_err(|e| StoreError::Chunk(id, n, e))?);
        }
        let more = out.len() > max;
        out.truncate(max);
        Ok((out, more))
    }

    /// The last `max` events of a session, in order: what a console shows
    /// when it starts watching, without reading a long session whole.
    pub fn events_tail(&self, id: RecordingId, max: usize) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(table) = existing(&txn, CHUNKS)? else {
            return Ok(Vec::new());
        };
        let key = id.0.as_u128();
        let mut chunks = Vec::new();
        let mut count = 0usize;
        for row in table.range((key, 0)..=(key, u32::MAX))?.rev() {
            let (k, v) = row?;
            let n = k.value().1;
            let chunk = Chunk::decode(v.value()).map_err(|e| StoreError::Chunk(id, n, e))?;
            count += chunk.count as usize;
            chunks.push((n, chunk));
            if count >= max {
                break;
            }
        }
        let mut out = Vec::with_capacity(count.min(max));
        for (n, chunk) in chunks.into_iter().rev() {
            out.extend(chunk.events().map_err(|e| StoreError::Chunk(id, n, e))?);
        }
        let skip = out.len().saturating_sub(max);
        out.drain(..skip);
        Ok(out)
    }
}

fn decode(key: u128, bytes: &[u8]) -> Result<SessionHeader, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Header(RecordingId(uuid::Uuid::from_u128(key)), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::SESSIONS;

    const DAY: i64 = 86_400_000_000;

    /// A store with one session every `step` µs from `start`, ids made the
    /// way sessions make them (UUIDv7 at the start time).
    fn store(start: i64, step: i64, n: usize) -> (tempfile::TempDir, RecordingStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        let db = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .create(&path)
            .unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SESSIONS).unwrap();
            for i in 0..n {
                let at = start + step * i as i64;
                let ms = (at / 1000) as u64;
                let ts = uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    ms / 1000,
                    (ms % 1000) as u32 * 1_000_000,
                );
                let id = RecordingId(uuid::Uuid::new_v7(ts));
                let h = SessionHeader {
                    id,
                    protocol: "postgres".into(),
                    started_at: at,
                    ended_at: None,
                    client_addr: "127.0.0.1:1".into(),
                    client_user: None,
                    connection: Some(format!("db-{}", i % 3)),
                    identity: Some(format!("bot-{i}")),
                    groups: vec![],
                    outcome: None,
                    reason: None,
                    event_count: 0,
                    ..SessionHeader::new(id, "postgres", at, String::new())
                };
                t.insert(id.0.as_u128(), serde_json::to_vec(&h).unwrap().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        let store = RecordingStore::open_read_only(&path).unwrap();
        (dir, store)
    }

    #[test]
    fn pages_walk_newest_first_and_meet_without_gaps() {
        let start = 1_700_000_000_000_000;
        let (_dir, store) = store(start, 60_000_000, 250);
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .page(Window::default(), before, 100, 10_000, |_| true)
                .unwrap();
            seen.extend(page.headers.iter().map(|h| h.started_at));
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 250);
        assert!(
            seen.windows(2).all(|w| w[0] > w[1]),
            "newest first, no repeats"
        );

        // A filter that matches little returns short pages, bounded work.
        let page = store
            .page(Window::default(), None, 10, 50, |h| {
                h.identity.as_deref() == Some("bot-240")
            })
            .unwrap();
        assert_eq!(page.scanned, 50);
        assert_eq!(page.headers.len(), 1);
        assert!(page.next.is_some(), "the caller may ask for more");
    }

    #[test]
    fn windows_and_days_follow_start_times_across_midnight() {
        // Sessions every 10 minutes for three days, starting 00:05.
        let day0 = 19_675 * DAY;
        let start = day0 + 300_000_000;
        let (_dir, store) = store(start, 600_000_000, 432);
        assert_eq!(store.days().unwrap(), [day0, day0 + DAY, day0 + 2 * DAY]);
        let second = store
            .sessions_between(Window {
                from: Some(day0 + DAY),
                to: Some(day0 + 2 * DAY),
            })
            .unwrap();
        assert_eq!(second.len(), 144);
        assert!(
            second
                .iter()
                .all(|h| h.started_at >= day0 + DAY && h.started_at < day0 + 2 * DAY)
        );
        let page = store
            .page(
                Window {
                    from: Some(day0 + DAY),
                    to: Some(day0 + 2 * DAY),
                },
                None,
                1000,
                1000,
                |_| true,
            )
            .unwrap();
        assert_eq!(page.headers.len(), 144);
        assert!(page.scanned <= 146, "read only that day: {}", page.scanned);
    }
}
