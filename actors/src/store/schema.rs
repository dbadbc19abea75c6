//! The on-disk format of `recordings.redb`, in one place.
//!
//! ```text
//! sessions : u128 (RecordingId)        -> JSON SessionHeader
//! chunks   : (u128 RecordingId, u32 n) -> Chunk (postcard)
//! seals    : u128 (RecordingId)        -> JSON Seal (written once, at the end)
//! purges   : i64 (unix µs)              -> JSON PurgeRecord (append-only audit log)
//! recorder_meta : &str               -> u64 ("log_folded": the last generation of
//!                                        the strict log folded into this store)
//! ```
//!
//! A chunk is a batch of consecutive events of one session, serialised as a
//! JSON array and compressed with zstd; the chunk envelope itself is postcard. Each chunk carries the SHA-256 of the
//! previous chunk of the same session (all zeros for the first), so a chunk
//! that is altered, removed or reordered breaks the chain. Headers are JSON
//! because they are small, read often and must stay readable by future
//! versions. Events are JSON too: self-describing (the event enum is
//! internally tagged, which non-self-describing formats such as postcard
//! cannot read back) and zstd removes most of its verbosity.
//! `FORMAT_VERSION` guards the event encoding. Version 2 follows the JSON
//! with a byte area for SSH stream bytes (the uncompressed chunk is
//! `u32 LE json length, json, bytes`; see [`crate::recording::blob`]);
//! version 1 chunks (JSON only) are still read.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::recording::Event;

pub const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
pub const CHUNKS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("chunks");
pub const SEALS: TableDefinition<u128, &[u8]> = TableDefinition::new("seals");
/// Every purge, manual or by retention. No code path deletes from it.
pub const PURGES: TableDefinition<i64, &[u8]> = TableDefinition::new("purges");

/// The recorder's own state. `LOG_FOLDED` is the last generation of the
/// strict sessions' log (`recorder/wal.rs`) whose records this store holds.
pub const RECORDER_META: TableDefinition<&str, u64> = TableDefinition::new("recorder_meta");
pub const LOG_FOLDED: &str = "log_folded";

/// Version of the event encoding inside chunks.
pub const FORMAT_VERSION: u16 = 2;
/// The JSON-only encoding, still read.
const FORMAT_V1: u16 = 1;

/// zstd level 3: the library default, a good speed/ratio point for text-heavy
/// events on a busy appliance.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Serialize, Deserialize)]
pub struct Chunk {
    pub version: u16,
    pub prev_hash: [u8; 32],
    pub first_seq: u64,
    pub count: u32,
    pub compressed: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk encoding: {0}")]
    Encoding(#[from] postcard::Error),
    #[error("event encoding: {0}")]
    Events(#[from] serde_json::Error),
    #[error("chunk compression: {0}")]
    Compression(#[from] std::io::Error),
    #[error("chunk format version {0} is not supported")]
    Version(u16),
    #[error("chunk layout: the event JSON runs past the chunk, or bytes no event claims")]
    Layout,
}

impl Chunk {
    pub fn seal(prev_hash: [u8; 32], events: &[Event]) -> Result<Chunk, ChunkError> {
        Self::seal_with(&mut Sealer::new()?, prev_hash, events)
    }

    /// As [`Chunk::seal`], reusing a [`Sealer`].
    pub fn seal_with(
        sealer: &mut Sealer,
        prev_hash: [u8; 32],
        events: &[Event],
    ) -> Result<Chunk, ChunkError> {
        sealer.raw.clear();
        sealer.raw.extend_from_slice(&[0; 4]);
        let sink = crate::recording::blob::Sink::attach(std::mem::take(&mut sealer.area));
        serde_json::to_writer(&mut sealer.raw, events)?;
        sealer.area = sink.finish();
        let json_len = u32::try_from(sealer.raw.len() - 4).map_err(|_| ChunkError::Layout)?;
        sealer.raw[..4].copy_from_slice(&json_len.to_le_bytes());
        sealer.raw.extend_from_slice(&sealer.area);
        let bound = zstd::zstd_safe::compress_bound(sealer.raw.len());
        sealer.out.clear();
        sealer.out.reserve(bound);
        let n = sealer
            .compressor
            .compress_to_buffer(&sealer.raw, &mut sealer.out)?;
        Ok(Chunk {
            version: FORMAT_VERSION,
            prev_hash,
            first_seq: events.first().map_or(0, |e| e.seq),
            count: events.len() as u32,
            compressed: sealer.out[..n].to_vec(),
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, ChunkError> {
        Ok(postcard::to_allocvec(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Chunk, ChunkError> {
        let chunk: Chunk = postcard::from_bytes(bytes)?;
        if chunk.version != FORMAT_VERSION && chunk.version != FORMAT_V1 {
            return Err(ChunkError::Version(chunk.version));
        }
        Ok(chunk)
    }

    pub fn events(&self) -> Result<Vec<Event>, ChunkError> {
        // Bound decompression by what a chunk may legitimately hold so a
        // corrupted size field cannot exhaust memory.
        let mut raw = zstd::bulk::decompress(&self.compressed, MAX_CHUNK_RAW)?;
        if self.version == FORMAT_V1 {
            return Ok(serde_json::from_slice(&raw)?);
        }
        let len = raw
            .first_chunk::<4>()
            .map(|n| u32::from_le_bytes(*n) as usize)
            .ok_or(ChunkError::Layout)?;
        if raw.len() - 4 < len {
            return Err(ChunkError::Layout);
        }
        let area = raw.split_off(4 + len);
        let source = crate::recording::blob::Source::attach(area);
        let events = serde_json::from_slice(&raw[4..])?;
        if !source.all_read() {
            return Err(ChunkError::Layout);
        }
        Ok(events)
    }
}

/// What sealing chunks reuses: a zstd context at the store's level
/// (creating one allocates and initialises its tables, which costs more
/// than compressing a small chunk) and the JSON and compressed buffers
/// (a chunk is up to a MiB; fresh buffers each time cost page faults that
/// bench/ssh.sh measured at a third of the recorder's time).
pub struct Sealer {
    compressor: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
    /// The byte area while the JSON is written.
    area: Vec<u8>,
    out: Vec<u8>,
}

impl Sealer {
    pub fn new() -> Result<Sealer, ChunkError> {
        let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
        // Each chunk checks itself: a flipped byte fails to inflate at the
        // chunk that holds it, instead of decoding to other events and
        // showing only as a broken link at the next chunk.
        compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        Ok(Sealer {
            compressor,
            raw: Vec::new(),
            area: Vec::new(),
            out: Vec::new(),
        })
    }
}

/// The hash the next chunk must carry: SHA-256 over the stored bytes.
pub fn chain_hash(stored: &[u8]) -> [u8; 32] {
    Sha256::digest(stored).into()
}

/// The recorder cuts a chunk before its raw size passes this, and readers
/// refuse to inflate more.
pub const MAX_CHUNK_RAW: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Direction, EventKind, Outcome, SshBytes};

    #[test]
    fn chunks_round_trip_every_event_shape() {
        let events = vec![
            Event {
                seq: 0,
                at: 1,
                dir: Direction::Client,
                kind: EventKind::Query {
                    sql: "select 1".into(),
                },
            },
            Event {
                seq: 1,
                at: 2,
                dir: Direction::Target,
                kind: EventKind::Row {
                    values: vec![Some("1".into()), None],
                },
            },
            Event {
                seq: 2,
                at: 3,
                dir: Direction::Target,
                kind: EventKind::SshData {
                    channel: 0,
                    stream: "stdout".into(),
                    data: SshBytes::from_bytes(b"\0\xffbinary"),
                },
            },
            Event {
                seq: 3,
                at: 3,
                dir: Direction::Client,
                kind: EventKind::SshData {
                    channel: 1,
                    stream: "stdin".into(),
                    data: SshBytes::from_bytes(b"ls -l\r"),
                },
            },
            Event {
                seq: 4,
                at: 3,
                dir: Direction::Gateway,
                kind: EventKind::End {
                    outcome: Outcome::Closed,
                    reason: None,
                },
            },
        ];
        let chunk = Chunk::seal([7; 32], &events).unwrap();
        let stored = chunk.encode().unwrap();
        let back = Chunk::decode(&stored).unwrap();
        assert_eq!(back.prev_hash, [7; 32]);
        assert_eq!(back.first_seq, 0);
        assert_eq!(back.events().unwrap(), events);
        // The sealer is reused: a second chunk does not carry the first's
        // bytes.
        let mut sealer = Sealer::new().unwrap();
        Chunk::seal_with(&mut sealer, [0; 32], &events).unwrap();
        let again = Chunk::seal_with(&mut sealer, [0; 32], &events[2..3]).unwrap();
        assert_eq!(again.events().unwrap(), events[2..3]);
    }

    /// A chunk whose uncompressed content is `raw`, as a writer of
    /// `version` would have stored it.
    fn stored_as(version: u16, raw: &[u8]) -> Chunk {
        Chunk {
            version,
            prev_hash: [0; 32],
            first_seq: 0,
            count: 0,
            compressed: zstd::bulk::compress(raw, 3).unwrap(),
        }
    }

    /// Stores written before the byte area (format 1: JSON only, stream
    /// bytes as text or base64) still read.
    #[test]
    fn version_1_chunks_still_read() {
        let json = br#"[{"seq":0,"at":1,"dir":"target","kind":{"kind":"ssh_data","channel":0,"stream":"stdout","data":{"base64":"AP8="}}},{"seq":1,"at":2,"dir":"target","kind":{"kind":"ssh_data","channel":0,"stream":"stdout","data":{"text":"hi"}}}]"#;
        let chunk = stored_as(FORMAT_V1, json);
        let back = Chunk::decode(&chunk.encode().unwrap()).unwrap();
        let events = back.events().unwrap();
        let bytes: Vec<&[u8]> = events
            .iter()
            .map(|e| match &e.kind {
                EventKind::SshData { data, .. } => data.as_bytes(),
                _ => b"",
            })
            .collect();
        assert_eq!(bytes, [&[0u8, 0xff][..], b"hi"]);
    }

    /// The security review's finding: references that repeat or overlap
    /// would let a few KB of compressed JSON claim the same megabytes
    /// thousands of times. Each byte is read once, in order.
    #[test]
    fn blob_references_are_read_once_in_order() {
        let area_of = |json: &str, area: &[u8]| {
            let mut raw = (json.len() as u32).to_le_bytes().to_vec();
            raw.extend_from_slice(json.as_bytes());
            raw.extend_from_slice(area);
            stored_as(FORMAT_VERSION, &raw)
        };
        let event = |seq: u32, at: u32| {
            format!(
                r#"{{"seq":{seq},"at":0,"dir":"target","kind":{{"kind":"ssh_data","channel":0,"stream":"stdout","data":{{"blob":[{at},2]}}}}}}"#
            )
        };
        let good = area_of(&format!("[{},{}]", event(0, 0), event(1, 2)), b"abcd");
        assert_eq!(good.events().unwrap().len(), 2);
        for (case, json, area) in [
            (
                "repeated",
                format!("[{},{}]", event(0, 0), event(1, 0)),
                &b"abcd"[..],
            ),
            (
                "backwards",
                format!("[{},{}]", event(0, 2), event(1, 0)),
                b"abcd",
            ),
            ("unclaimed bytes", format!("[{}]", event(0, 0)), b"abcd"),
        ] {
            assert!(area_of(&json, area).events().is_err(), "{case}");
        }
    }

    /// A damaged layout is an error, not a panic or a read past the end.
    #[test]
    fn a_json_length_past_the_chunk_is_refused() {
        for raw in [&b""[..], b"\x01\x00", b"\xff\x00\x00\x00[]"] {
            let chunk = stored_as(FORMAT_VERSION, raw);
            assert!(matches!(chunk.events(), Err(ChunkError::Layout)), "{raw:?}");
        }
    }
}
