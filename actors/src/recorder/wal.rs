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
//! events) and start the log's next generation. After a crash the log is
//! replayed into redb before anything else starts, so nothing a client saw
//! succeed is lost, and recovery replays at most one flush interval's worth
//! of strict events.
//!
//! On disk, `recordings.wal` next to `recordings.redb` is a sequence of
//! records:
//!
//! ```text
//! u32 LE  payload length
//! u64 LE  generation
//! [u8; 8] first 8 bytes of SHA-256(generation LE, payload): a torn or
//!         partly written record (power loss mid-append) ends the log there
//! payload JSON WalRecord { header, events }
//! ```
//!
//! A record holds a session's header as it was then and its events not yet
//! durable anywhere, numbered by the recorder. A session's records
//! therefore continue each other and continue what redb holds, so replay
//! is a matter of appending the events redb does not have yet.
//!
//! The file is written in place: emptying the log starts a new
//! generation at offset 0 rather than truncating the file. An append then
//! overwrites blocks the file already has, so its `fdatasync` writes data
//! only, with no journal commit for a changed size: about 100 µs here
//! against 155 µs for an append that grows the file. The bytes after the
//! live records are older generations' records or their remains. Which
//! generations are folded is kept in redb: the batched commit that folds
//! the log stores, in the same transaction, the generation it folded
//! ([`crate::store::schema::RECORDER_META`]), and only records of later
//! generations are replayed. Otherwise a restart could replay a record
//! folded long ago, and bring back a recording purged since. At start,
//! once replayed, the file is emptied and synced: whole records a crash
//! left past a torn one were never scanned, so never marked folded.
//!
//! Layout: [`encode`] and [`decode_all`] are the codec (no I/O); [`Wal`]
//! the file.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::recording::{Event, SessionHeader};

const LEN: usize = 4;
const GENERATION: usize = 8;
const SUM: usize = 8;
const HEADER: usize = LEN + GENERATION + SUM;

/// A record's payload can hold at most one chunk's worth of events plus a
/// header; anything claiming more is damage, not data.
const MAX_RECORD: usize = crate::store::schema::MAX_CHUNK_RAW + (1 << 20);

/// A file grown past this by a burst is cut back when a generation
/// starts, so one burst does not keep its size for good.
const KEEP_AT_MOST: u64 = 64 << 20;

/// One session's events that became durable together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    pub header: SessionHeader,
    pub events: Vec<Event>,
}

/// The first 8 bytes of SHA-256 over the header fields it covers (the
/// generation; none in the first format) and the payload.
fn checksum(covered: &[u8], payload: &[u8]) -> [u8; SUM] {
    let mut hasher = Sha256::new();
    hasher.update(covered);
    hasher.update(payload);
    let digest = hasher.finalize();
    let mut out = [0u8; SUM];
    out.copy_from_slice(&digest[..SUM]);
    out
}

/// Append `record`, of `generation`, to `out`.
pub fn encode(
    generation: u64,
    record: &WalRecord,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let payload = serde_json::to_vec(record)?;
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&checksum(&generation.to_le_bytes(), &payload));
    out.extend_from_slice(&payload);
    Ok(())
}

/// Every whole record in `bytes` with its generation, in order, and the
/// length they cover. A record cut short, failing its checksum or
/// unreadable ends the log: it was being written when the appliance
/// stopped and was never acknowledged, and nothing after it can be
/// trusted to follow it. Records of folded generations are returned too;
/// the caller knows which generations those are.
pub fn decode_all(bytes: &[u8]) -> (Vec<(u64, WalRecord)>, usize) {
    decode(bytes, Layout::Generations)
}

/// The generation given to records of the first format, which had none:
/// `u32 LE length, [u8; 8] SHA-256(payload) prefix, payload`. A log left
/// by that version (it crashed, then was upgraded) is replayed like any
/// unfolded generation: its store has no folded generation yet.
pub const LEGACY_GENERATION: u64 = 1;

/// The record layouts this log has had.
#[derive(Clone, Copy)]
enum Layout {
    /// Length, generation, checksum over both generation and payload.
    Generations,
    /// The first: length, checksum over the payload; [`LEGACY_GENERATION`].
    Legacy,
}

/// [`decode_all`] for either layout: the checksum is always the header's
/// last field, and covers whatever lies between it and the length.
fn decode(bytes: &[u8], layout: Layout) -> (Vec<(u64, WalRecord)>, usize) {
    let header = match layout {
        Layout::Generations => HEADER,
        Layout::Legacy => LEN + SUM,
    };
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= header {
        let len = u32::from_le_bytes(bytes[at..at + LEN].try_into().expect("4 bytes")) as usize;
        let start = at + header;
        if len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let covered = &bytes[at + LEN..start - SUM];
        let generation = match layout {
            Layout::Generations => u64::from_le_bytes(covered.try_into().expect("8 bytes")),
            Layout::Legacy => LEGACY_GENERATION,
        };
        let payload = &bytes[start..start + len];
        if bytes[start - SUM..start] != checksum(covered, payload) {
            break;
        }
        match serde_json::from_slice::<WalRecord>(payload) {
            Ok(r) => records.push((generation, r)),
            Err(_) => break,
        }
        at = start + len;
    }
    (records, at)
}

/// The log file.
pub struct Wal {
    path: PathBuf,
    file: File,
    /// The generation appends belong to.
    generation: u64,
    /// Length of the current generation's whole records, from offset 0.
    len: u64,
    /// The file's length: the most any generation wrote.
    file_len: u64,
    /// An append of this generation was attempted: its bytes may be in
    /// the file (a failed append too), so the fold must mark it folded.
    touched: bool,
}

impl Wal {
    /// The log that belongs to the store at `store_path`.
    pub fn path_for(store_path: &Path) -> PathBuf {
        store_path.with_extension("wal")
    }

    /// Open (creating) the log and return every whole record it holds,
    /// with its generation. The caller replays those of generations not
    /// yet folded, then calls [`Wal::clear`] with a generation above all
    /// of them.
    pub fn open(path: &Path) -> std::io::Result<(Wal, Vec<(u64, WalRecord)>)> {
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
        let (mut records, _) = decode_all(&bytes);
        if records.is_empty() {
            records = decode(&bytes, Layout::Legacy).0;
        }
        let wal = Wal {
            path: path.to_owned(),
            file,
            generation: 0,
            len: 0,
            file_len: bytes.len() as u64,
            touched: false,
        };
        Ok((wal, records))
    }

    /// Append encoded records (of [`Wal::generation`]) and make them
    /// durable: one write, one `fdatasync`. On failure the record's header
    /// is overwritten (best effort), so that a later crash does not find a
    /// record whose append was reported failed.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.touched = true;
        let result = self
            .file
            .write_all_at(bytes, self.len)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.file_len = self.file_len.max(self.len);
                Ok(())
            }
            Err(e) => {
                let n = bytes.len().min(HEADER);
                if let Err(undo) = self.file.write_all_at(&[0; HEADER][..n], self.len) {
                    tracing::error!(path = %self.path.display(), "recording log: a failed append could not be undone: {undo}");
                }
                Err(e)
            }
        }
    }

    /// Start `generation` at offset 0: everything in the log is in redb,
    /// with a generation at least the current one marked folded. Nothing
    /// is written; stale bytes are told apart by their generation.
    pub fn restart(&mut self, generation: u64) {
        self.generation = generation;
        self.len = 0;
        self.touched = false;
        if self.file_len > KEEP_AT_MOST {
            // Not synced: should the old length survive a crash, its
            // records belong to folded generations.
            match self.file.set_len(0) {
                Ok(()) => self.file_len = 0,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "recording log could not be shrunk: {e}")
                }
            }
        }
    }

    /// Empty the file durably and start `generation`: at start, once what
    /// the log held is replayed and marked folded. A crash may have left
    /// whole records past a torn one, which the scan never reached and so
    /// could not mark folded; a later generation of the same number, or a
    /// later scan that gets past the tear, must never find them.
    pub fn clear(&mut self, generation: u64) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.file_len = 0;
        self.restart(generation);
        Ok(())
    }

    /// Go on appending after the current records under `generation`: a
    /// fold failed, and may or may not have marked the current generation
    /// folded, so what comes next must be of a later one.
    pub fn continue_as(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// The generation appends belong to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether an append of the current generation was attempted, so that
    /// bytes of it may be in the file.
    pub fn touched(&self) -> bool {
        self.touched
    }

    /// Bytes of the current generation: strict events not yet folded.
    pub fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

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

    fn encoded(generation: u64, records: &[WalRecord]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for r in records {
            encode(generation, r, &mut bytes).unwrap();
        }
        bytes
    }

    #[test]
    fn records_round_trip() {
        let bytes = encoded(7, &[record(0, "select 1"), record(1, "select 2")]);
        let (back, whole) = decode_all(&bytes);
        assert_eq!(
            back,
            vec![(7, record(0, "select 1")), (7, record(1, "select 2"))]
        );
        assert_eq!(whole, bytes.len());
    }

    /// A log cut anywhere (power loss mid-append) yields exactly the
    /// records that were whole, and never panics.
    #[test]
    fn a_torn_tail_ends_the_log() {
        let first = encoded(1, &[record(0, "select 1")]).len();
        let bytes = encoded(1, &[record(0, "select 1"), record(1, "select 2")]);
        for cut in 0..bytes.len() {
            let (back, whole) = decode_all(&bytes[..cut]);
            let expect = usize::from(cut >= first);
            assert_eq!(back.len(), expect, "cut at {cut}");
            assert_eq!(whole, if cut >= first { first } else { 0 });
        }
    }

    #[test]
    fn a_damaged_record_ends_the_log() {
        let first = encoded(1, &[record(0, "select 1")]).len();
        let records = [
            record(0, "select 1"),
            record(1, "select 2"),
            record(2, "select 3"),
        ];
        let mut bytes = encoded(1, &records);
        bytes[first + HEADER + 3] ^= 1;
        let (back, whole) = decode_all(&bytes);
        assert_eq!(back, vec![(1, record(0, "select 1"))]);
        assert_eq!(whole, first);
        // The generation is under the checksum: a record cannot be moved
        // to another generation by a flipped bit.
        let mut bytes = encoded(1, &records);
        bytes[LEN] ^= 2;
        assert_eq!(decode_all(&bytes).0.len(), 0);
        // A length that claims the moon is damage too.
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 64]);
        assert_eq!(decode_all(&huge).0.len(), 0);
    }

    /// A log left by the first format (no generations) by a version that
    /// crashed before it was upgraded still gives back its records.
    #[test]
    fn a_log_of_the_first_format_is_read() {
        let mut legacy = Vec::new();
        for r in [record(0, "select 1"), record(1, "select 2")] {
            let payload = serde_json::to_vec(&r).unwrap();
            legacy.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            legacy.extend_from_slice(&Sha256::digest(&payload)[..SUM]);
            legacy.extend_from_slice(&payload);
        }
        // Not mistaken for the current format.
        assert!(decode_all(&legacy).0.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recordings.wal");
        std::fs::write(&path, &legacy).unwrap();
        assert_eq!(
            reopen(&path),
            vec![
                (LEGACY_GENERATION, record(0, "select 1")),
                (LEGACY_GENERATION, record(1, "select 2"))
            ]
        );
    }

    fn reopen(path: &Path) -> Vec<(u64, WalRecord)> {
        Wal::open(path).unwrap().1
    }

    #[test]
    fn generations_are_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recordings.wal");
        let (mut wal, old) = Wal::open(&path).unwrap();
        assert!(old.is_empty());
        wal.restart(1);
        let first = [
            record(0, "select 1"),
            record(1, "select 2"),
            record(2, "select 3"),
        ];
        for r in &first {
            wal.append(&encoded(1, std::slice::from_ref(r))).unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(wal.len(), size);
        drop(wal);
        // A torn append after them, as a crash would leave.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[9, 0, 0])
            .unwrap();
        let back = reopen(&path);
        assert_eq!(back.len(), 3);
        assert!(back.iter().all(|(g, _)| *g == 1));

        // The next generation overwrites from the start and the file keeps
        // its size; the first generation's later records are still there,
        // told apart by their generation.
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.restart(2);
        wal.append(&encoded(2, &[record(0, "select 9")])).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size + 3);
        let back = reopen(&path);
        assert_eq!(back[0], (2, record(0, "select 9")));
        assert_eq!(&back[1..], &[(1, first[1].clone()), (1, first[2].clone())]);

        // After a failed fold, appends go on in place under a later
        // generation.
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.restart(2);
        wal.append(&encoded(2, &[record(0, "select 9")])).unwrap();
        wal.continue_as(3);
        wal.append(&encoded(3, &[record(1, "select 10")])).unwrap();
        let back = reopen(&path);
        assert_eq!(back[0].0, 2);
        assert_eq!(back[1], (3, record(1, "select 10")));
    }
}
