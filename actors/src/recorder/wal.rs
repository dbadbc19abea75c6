//! The write-ahead log that strict sessions wait on.
//!
//! A strict statement is forwarded only once its event is durable. A redb
//! commit makes it durable too, but a commit rewrites B-tree pages and
//! costs several times one `fdatasync`; statements waiting on commits ran
//! at a quarter of batched throughput. So a strict event is first appended
//! here — one write and one `fdatasync` shared by every session waiting at
//! that moment — and the session goes on. The recorder's ordinary batched
//! commits fold the same events into redb as chunks (the hash chain and
//! seals are unchanged: chunks are still cut from the recorder's pending
//! events) and empty the log. After a crash the log is replayed into redb
//! before anything else starts, so nothing a client saw succeed is lost,
//! and recovery reads at most one flush interval's worth of strict events.
//!
//! On disk, `recordings.wal` next to `recordings.redb` is a sequence of
//! records:
//!
//! ```text
//! u32 LE  payload length
//! [u8; 8] first 8 bytes of SHA-256(payload): a torn or partly written
//!         record (power loss mid-append) ends the log there
//! payload JSON WalRecord { header, events }
//! ```
//!
//! A record holds a session's header as it was then and its events not yet
//! durable anywhere, numbered by the recorder. A session's records
//! therefore continue each other and continue what redb holds, so replay
//! is a matter of appending the events redb does not have yet.
//!
//! Layout: [`encode`] and [`decode_all`] are the codec (no I/O); [`Wal`]
//! the file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::recording::{Event, SessionHeader};

const LEN: usize = 4;
const SUM: usize = 8;

/// A record's payload can hold at most one chunk's worth of events plus a
/// header; anything claiming more is damage, not data.
const MAX_RECORD: usize = crate::store::schema::MAX_CHUNK_RAW + (1 << 20);

/// One session's events that became durable together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    pub header: SessionHeader,
    pub events: Vec<Event>,
}

fn checksum(payload: &[u8]) -> [u8; SUM] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; SUM];
    out.copy_from_slice(&digest[..SUM]);
    out
}

/// Append `record` to `out`.
pub fn encode(record: &WalRecord, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let payload = serde_json::to_vec(record)?;
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    Ok(())
}

/// Every whole record in `bytes`, in order, and the length they cover. A
/// record cut short, failing its checksum or unreadable ends the log: it
/// was being written when the appliance stopped and was never
/// acknowledged, and nothing after it can be trusted to follow it.
pub fn decode_all(bytes: &[u8]) -> (Vec<WalRecord>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= LEN + SUM {
        let mut len = [0u8; LEN];
        len.copy_from_slice(&bytes[at..at + LEN]);
        let len = u32::from_le_bytes(len) as usize;
        let start = at + LEN + SUM;
        if len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if bytes[at + LEN..start] != checksum(payload) {
            break;
        }
        match serde_json::from_slice::<WalRecord>(payload) {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
        at = start + len;
    }
    (records, at)
}

/// The log file, opened for appending.
pub struct Wal {
    path: PathBuf,
    file: File,
    /// Length of the whole records written so far.
    len: u64,
}

impl Wal {
    /// The log that belongs to the store at `store_path`.
    pub fn path_for(store_path: &Path) -> PathBuf {
        store_path.with_extension("wal")
    }

    /// Open (creating) the log and return what it holds from a previous
    /// run. The caller replays those records and then calls [`Wal::reset`].
    pub fn open(path: &Path) -> std::io::Result<(Wal, Vec<WalRecord>)> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, whole) = decode_all(&bytes);
        if whole < bytes.len() {
            // Cut now, so nothing stale can ever follow a later append.
            file.set_len(whole as u64)?;
            tracing::warn!(
                path = %path.display(),
                ignored = bytes.len() - whole,
                "recording log ends with an incomplete record (written when the appliance stopped); ignored"
            );
        }
        let wal = Wal {
            path: path.to_owned(),
            file,
            len: whole as u64,
        };
        Ok((wal, records))
    }

    /// Append encoded records and make them durable: one write, one
    /// `fdatasync`. On failure the log is cut back to its last whole
    /// record, so a later append never follows a torn one.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let result = (|| {
            self.file.seek(SeekFrom::Start(self.len))?;
            self.file.write_all(bytes)?;
            self.file.sync_data()
        })();
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(path = %self.path.display(), "recording log could not be cut back after a failed append: {cut}");
                }
                Err(e)
            }
        }
    }

    /// Empty the log: everything in it is now in redb. Not synced on its
    /// own — should the old content survive a crash, replay finds its
    /// events already stored and skips them.
    pub fn reset(&mut self) -> std::io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }

    /// Bytes in the log now.
    pub fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Direction, EventKind, RecordingId};

    fn record(seq: u64, sql: &str) -> WalRecord {
        WalRecord {
            header: SessionHeader {
                connection: Some("app-db".into()),
                ..SessionHeader::new(
                    RecordingId(uuid::Uuid::nil()),
                    "postgres",
                    1,
                    "127.0.0.1:1".into(),
                )
            },
            events: vec![Event {
                seq,
                at: 2,
                dir: Direction::Client,
                kind: EventKind::Query { sql: sql.into() },
            }],
        }
    }

    #[test]
    fn records_round_trip() {
        let mut bytes = Vec::new();
        encode(&record(0, "select 1"), &mut bytes).unwrap();
        encode(&record(1, "select 2"), &mut bytes).unwrap();
        let (back, whole) = decode_all(&bytes);
        assert_eq!(back, vec![record(0, "select 1"), record(1, "select 2")]);
        assert_eq!(whole, bytes.len());
    }

    /// A log cut anywhere (power loss mid-append) yields exactly the
    /// records that were whole, and never panics.
    #[test]
    fn a_torn_tail_ends_the_log() {
        let mut bytes = Vec::new();
        encode(&record(0, "select 1"), &mut bytes).unwrap();
        let first = bytes.len();
        encode(&record(1, "select 2"), &mut bytes).unwrap();
        for cut in 0..bytes.len() {
            let (back, whole) = decode_all(&bytes[..cut]);
            let expect = usize::from(cut >= first);
            assert_eq!(back.len(), expect, "cut at {cut}");
            assert_eq!(whole, if cut >= first { first } else { 0 });
        }
    }

    #[test]
    fn a_damaged_record_ends_the_log() {
        let mut bytes = Vec::new();
        encode(&record(0, "select 1"), &mut bytes).unwrap();
        let first = bytes.len();
        encode(&record(1, "select 2"), &mut bytes).unwrap();
        encode(&record(2, "select 3"), &mut bytes).unwrap();
        bytes[first + LEN + SUM + 3] ^= 1;
        let (back, whole) = decode_all(&bytes);
        assert_eq!(back, vec![record(0, "select 1")]);
        assert_eq!(whole, first);
        // A length that claims the moon is damage too.
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 64]);
        assert_eq!(decode_all(&huge).0.len(), 0);
    }

    #[test]
    fn appends_survive_reopen_and_reset_empties() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recordings.wal");
        let (mut wal, old) = Wal::open(&path).unwrap();
        assert!(old.is_empty());
        let mut bytes = Vec::new();
        encode(&record(0, "select 1"), &mut bytes).unwrap();
        wal.append(&bytes).unwrap();
        drop(wal);
        // A torn append after it, as a crash would leave.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[9, 0, 0])
            .unwrap();
        let (mut wal, old) = Wal::open(&path).unwrap();
        assert_eq!(old, vec![record(0, "select 1")]);
        // The next append overwrites the torn bytes.
        let mut more = Vec::new();
        encode(&record(1, "select 2"), &mut more).unwrap();
        wal.append(&more).unwrap();
        drop(wal);
        let (mut wal, old) = Wal::open(&path).unwrap();
        assert_eq!(old, vec![record(0, "select 1"), record(1, "select 2")]);
        wal.reset().unwrap();
        drop(wal);
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }
}
