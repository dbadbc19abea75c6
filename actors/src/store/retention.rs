//! Retention and purges: which sealed recordings go, and the audit log
//! that records every removal.
//!
//! Only sealed sessions are ever removed (a live or unsealed one is kept
//! whatever its age), oldest first. Each purge appends a `PurgeRecord`
//! (when, why, who asked, which sessions, how many bytes) to the `purges`
//! table, which nothing deletes from, so a purge cannot happen silently.

use std::time::Duration;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::schema::{CHUNKS, PURGES, SEALS, SESSIONS};
use super::seal::Seal;
use crate::recording::{RecordingId, SessionHeader};

/// What to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Criteria {
    /// Sessions that ended before this time (unix µs).
    pub ended_before: Option<i64>,
    /// Remove oldest sessions until the stored chunk bytes fit.
    pub max_bytes: Option<u64>,
}

/// Retention from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub keep: Option<Duration>,
    pub max_bytes: Option<u64>,
}

impl Retention {
    pub fn criteria(&self, now: i64) -> Option<Criteria> {
        if self.keep.is_none() && self.max_bytes.is_none() {
            return None;
        }
        // An age too large to subtract means "keep everything by age";
        // wrapping around would instead purge everything.
        let ended_before = self.keep.and_then(|k| {
            i64::try_from(k.as_micros())
                .ok()
                .and_then(|m| now.checked_sub(m))
        });
        if ended_before.is_none() && self.max_bytes.is_none() {
            return None;
        }
        Some(Criteria {
            ended_before,
            max_bytes: self.max_bytes,
        })
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    pub at: i64,
    /// `retention` or the operator's description (`cli uid=0`).
    pub by: String,
    pub ended_before: Option<i64>,
    pub max_bytes: Option<u64>,
    pub sessions: Vec<RecordingId>,
    pub bytes: u64,
}

/// Remove what `criteria` selects inside `txn` and log it. Sessions in
/// `live` are never touched. Returns the log entry (also when nothing was
/// removed, in which case nothing is logged).
pub fn purge(
    txn: &WriteTransaction,
    criteria: Criteria,
    by: &str,
    now: i64,
    live: &dyn Fn(RecordingId) -> bool,
) -> Result<PurgeRecord, StoreError> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut chunks = txn.open_table(CHUNKS)?;
    let mut seals = txn.open_table(SEALS)?;
    let mut purges = txn.open_table(PURGES)?;

    // Sealed, ended sessions, oldest first (ids are time-ordered).
    let mut sealed: Vec<(u128, i64, u64)> = Vec::new();
    let mut total = 0u64;
    for row in seals.iter()? {
        let (k, v) = row?;
        let Ok(seal) = serde_json::from_slice::<Seal>(v.value()) else {
            continue;
        };
        total += seal.bytes;
        let ended = sessions
            .get(k.value())?
            .and_then(|h| serde_json::from_slice::<SessionHeader>(h.value()).ok())
            .and_then(|h| h.ended_at)
            .unwrap_or(i64::MAX);
        if !live(seal.id) {
            sealed.push((k.value(), ended, seal.bytes));
        }
    }
    let mut chosen = Vec::new();
    let mut freed = 0u64;
    for (key, ended, bytes) in &sealed {
        let too_old = criteria.ended_before.is_some_and(|b| *ended < b);
        let too_big = criteria.max_bytes.is_some_and(|m| total - freed > m);
        if too_old || too_big {
            chosen.push(*key);
            freed += bytes;
        }
    }
    for key in &chosen {
        let numbers: Vec<u32> = chunks
            .range((*key, 0)..=(*key, u32::MAX))?
            .map(|r| r.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for n in numbers {
            chunks.remove((*key, n))?;
        }
        seals.remove(*key)?;
        sessions.remove(*key)?;
    }
    let record = PurgeRecord {
        at: now,
        by: by.to_owned(),
        ended_before: criteria.ended_before,
        max_bytes: criteria.max_bytes,
        sessions: chosen
            .iter()
            .map(|k| RecordingId(uuid::Uuid::from_u128(*k)))
            .collect(),
        bytes: freed,
    };
    if !chosen.is_empty() {
        // Two purges in the same microsecond get distinct keys.
        let mut at = now;
        while purges.get(at)?.is_some() {
            at += 1;
        }
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| StoreError::Header(RecordingId(uuid::Uuid::nil()), e))?;
        purges.insert(at, bytes.as_slice())?;
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_ages_keep_everything_instead_of_wrapping() {
        let r = Retention {
            keep: Some(Duration::from_secs(999_999_999 * 86_400)),
            max_bytes: None,
        };
        assert_eq!(r.criteria(1_700_000_000_000_000), None);
        let r = Retention {
            keep: Some(Duration::from_secs(86_400)),
            max_bytes: None,
        };
        assert_eq!(
            r.criteria(1_000_000_000_000),
            Some(Criteria {
                ended_before: Some(1_000_000_000_000 - 86_400_000_000),
                max_bytes: None
            })
        );
    }
}
