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
//! A chunk is a batch of consecutive events of one session, serialised and
//! compressed with zstd; the chunk envelope itself is postcard. Each chunk
//! carries the SHA-256 of the previous chunk of the same session (all zeros
//! for the first), so a chunk that is altered, removed or reordered breaks
//! the chain. Headers are JSON because they are small, read often and must
//! stay readable by future versions.
//!
//! `FORMAT_VERSION` guards the event encoding. The uncompressed chunk is
//! `u32 LE events length, events, bytes`: the bytes are a byte area for
//! SSH stream bytes (see [`crate::recording::blob`]).
//! - Version 3 (written now): the events are MessagePack, each struct an
//!   array of its fields in declaration order and each event kind tagged
//!   by its name, as in the JSON of exports (serde's internal tagging,
//!   which postcard cannot read back). Encoding it costs a fraction of
//!   JSON's string escaping on the recorder thread, and zstd gets fewer
//!   bytes. Fields are positional, so a field may only be added at the end
//!   of its struct or variant, with `#[serde(default)]`;
//!   `version_3_chunks_written_earlier_still_read` holds one event of every
//!   kind as first written. Readers check the encoding's bounds first
//!   (`super::packed`): chunk bytes may come from someone else's archive.
//! - Version 2: the events are JSON. Still read.
//! - Version 1: a JSON array only, no length and no byte area. Still read.

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
pub const FORMAT_VERSION: u16 = 3;
/// Events as JSON, then the byte area. Still read.
const FORMAT_V2: u16 = 2;
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
    #[error("event encoding: {0}")]
    Packed(#[from] rmp_serde::encode::Error),
    #[error("event decoding: {0}")]
    Unpacked(#[from] rmp_serde::decode::Error),
    #[error("chunk compression: {0}")]
    Compression(#[from] std::io::Error),
    #[error("chunk format version {0} is not supported")]
    Version(u16),
    #[error("chunk layout: the events run past the chunk, or bytes no event claims")]
    Layout,
    #[error("chunk events refused before decoding: {0}")]
    Bounds(#[from] super::packed::Bounds),
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
        let mut packer = rmp_serde::Serializer::new(&mut sealer.raw);
        events.serialize(&mut packer)?;
        sealer.area = sink.finish();
        let events_len = u32::try_from(sealer.raw.len() - 4).map_err(|_| ChunkError::Layout)?;
        sealer.raw[..4].copy_from_slice(&events_len.to_le_bytes());
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
        if !matches!(chunk.version, FORMAT_VERSION | FORMAT_V2 | FORMAT_V1) {
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
        let events = match self.version {
            FORMAT_V2 => serde_json::from_slice(&raw[4..])?,
            FORMAT_VERSION => {
                super::packed::check(&raw[4..], self.count)?;
                rmp_serde::from_slice(&raw[4..])?
            }
            other => return Err(ChunkError::Version(other)),
        };
        if !source.all_read() {
            return Err(ChunkError::Layout);
        }
        Ok(events)
    }
}

/// What sealing chunks reuses: a zstd context at the store's level
/// (creating one allocates and initialises its tables, which costs more
/// than compressing a small chunk) and the encoded and compressed buffers
/// (a chunk is up to a MiB; fresh buffers each time cost page faults that
/// bench/ssh.sh measured at a third of the recorder's time).
pub struct Sealer {
    compressor: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
    /// The byte area while the events are encoded.
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

    /// One event of every kind, with the awkward values each field type
    /// can hold (NULLs, a negative number, a char, an empty string,
    /// bytes that are not UTF-8).
    fn one_of_every_kind() -> Vec<Event> {
        let s = |v: &str| v.to_owned();
        let kinds = vec![
            EventKind::Connected { target: s("db") },
            EventKind::Query {
                sql: s("select 'é'"),
            },
            EventKind::Parse {
                statement: s(""),
                sql: s("select $1"),
            },
            EventKind::Bind {
                portal: s("p"),
                statement: s("s"),
                params: vec![None, Some(s("\\x00ff"))],
            },
            EventKind::Execute {
                portal: s(""),
                max_rows: -1,
            },
            EventKind::FunctionCall {
                oid: 1,
                args: vec![None],
            },
            EventKind::Opaque { tag: 'H', len: 4 },
            EventKind::Columns {
                names: vec![s("a"), s("")],
            },
            EventKind::Row { values: vec![] },
            EventKind::Complete {
                tag: s("SELECT 1"),
                rows: u64::MAX,
                rows_recorded: 0,
            },
            EventKind::Error {
                severity: s("ERROR"),
                code: s("42501"),
                message: s("no"),
            },
            EventKind::Notice {
                severity: s("NOTICE"),
                code: s("00000"),
                message: s("hi"),
            },
            EventKind::Notification {
                channel: s("c"),
                payload: s("p"),
            },
            EventKind::Copy {
                direction: Direction::Client,
                bytes: 3,
                messages: 1,
            },
            EventKind::Cancel,
            EventKind::End {
                outcome: Outcome::Terminated,
                reason: Some(s("operator")),
            },
            EventKind::Blocked {
                rule: s("r"),
                reason: s("x"),
            },
            EventKind::ApprovalRequested {
                id: s("a"),
                rule: s("r"),
                deadline: i64::MIN,
            },
            EventKind::ApprovalDecided {
                id: s("a"),
                decision: s("approved"),
                by: s("op"),
                reason: None,
            },
            EventKind::Masked {
                counts: vec![(s("r"), s("email"), 2)],
            },
            EventKind::AdminCommand { command: s("ls") },
            EventKind::AdminExit {
                status: 0,
                bytes: 9,
            },
            EventKind::Sftp {
                op: s("open"),
                path: s("/x"),
                outcome: s("ok"),
                bytes: 0,
            },
            EventKind::SqlBytes {
                statement: None,
                encoding: s("LATIN1"),
                sql: vec![0xe9, 0].into(),
            },
            EventKind::SshChannelOpen {
                channel: 0,
                channel_type: s("session"),
            },
            EventKind::SshPty {
                channel: 0,
                term: s("xterm"),
                cols: 80,
                rows: 24,
            },
            EventKind::SshResize {
                channel: 0,
                cols: 1,
                rows: 1,
            },
            EventKind::SshEnv {
                channel: 0,
                name: s("LANG"),
                value: None,
                accepted: false,
            },
            EventKind::SshStart {
                channel: 0,
                request: s("exec"),
                command: s("id"),
            },
            EventKind::SshData {
                channel: 0,
                stream: s("stdout"),
                data: SshBytes::from_bytes(b"\xff\0"),
            },
            EventKind::SshLine {
                channel: 0,
                line: s("ls"),
            },
            EventKind::SshSignal {
                channel: 0,
                signal: s("INT"),
            },
            EventKind::SshExit {
                channel: 0,
                status: None,
                signal: Some(s("KILL")),
            },
            EventKind::SshChannelClose {
                channel: 0,
                bytes_in: 1,
                bytes_out: 2,
            },
            EventKind::FileOp {
                channel: 0,
                protocol: s("sftp"),
                op: s("rename"),
                path: s("a"),
                to: Some(s("b")),
                flags: None,
                bytes: 0,
                sha256: None,
                outcome: s("ok"),
            },
            EventKind::PortForward {
                channel: None,
                forward: s("direct-tcpip"),
                from: s("a"),
                to: s("b"),
                bytes_in: 0,
                bytes_out: 0,
                outcome: s("closed"),
            },
            EventKind::CopyData {
                direction: Direction::Client,
                data: s("1\t[redacted]\n"),
                cut: 0,
            },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                seq: i as u64,
                at: -(i as i64),
                dir: Direction::Gateway,
                kind,
            })
            .collect()
    }

    #[test]
    fn every_event_kind_round_trips() {
        let events = one_of_every_kind();
        let chunk = Chunk::seal([0; 32], &events).unwrap();
        assert_eq!(chunk.version, FORMAT_VERSION);
        let back = Chunk::decode(&chunk.encode().unwrap()).unwrap();
        assert_eq!(back.events().unwrap(), events);
    }

    /// Format 3 as this version wrote it (the uncompressed chunk, in
    /// hex): fields are positional, so a later version that reorders or
    /// inserts fields fails here instead of misreading stored recordings.
    #[test]
    fn version_3_chunks_written_earlier_still_read() {
        const WRITTEN: &str = concat!(
            "84040000dc0025940000a76761746577617992a9636f6e6e6563746564a264629401ffa767617465",
            "77617992a57175657279ab73656c6563742027c3a9279402fea76761746577617993a57061727365",
            "a0a973656c6563742024319403fda76761746577617994a462696e64a170a17392c0a65c78303066",
            "669404fca76761746577617993a765786563757465a0ff9405fba76761746577617993ad66756e63",
            "74696f6e5f63616c6c0191c09406faa76761746577617993a66f7061717565a148049407f9a76761",
            "746577617992a7636f6c756d6e7392a161a09408f8a76761746577617992a3726f77909409f7a767",
            "61746577617994a8636f6d706c657465a853454c4543542031cfffffffffffffffff00940af6a767",
            "61746577617994a56572726f72a54552524f52a53432353031a26e6f940bf5a76761746577617994",
            "a66e6f74696365a64e4f54494345a53030303030a26869940cf4a76761746577617993ac6e6f7469",
            "6669636174696f6ea163a170940df3a76761746577617994a4636f7079a6636c69656e740301940e",
            "f2a76761746577617991a663616e63656c940ff1a76761746577617993a3656e64aa7465726d696e",
            "61746564a86f70657261746f729410f0a76761746577617993a7626c6f636b6564a172a1789411ef",
            "a76761746577617994b2617070726f76616c5f726571756573746564a161a172d380000000000000",
            "009412eea76761746577617995b0617070726f76616c5f64656369646564a161a8617070726f7665",
            "64a26f70c09413eda76761746577617992a66d61736b65649193a172a5656d61696c029414eca767",
            "61746577617992ad61646d696e5f636f6d6d616e64a26c739415eba76761746577617993aa61646d",
            "696e5f6578697400099416eaa76761746577617995a473667470a46f70656ea22f78a26f6b009417",
            "e9a76761746577617994a973716c5f6279746573c0a64c4154494e31a4653930309418e8a7676174",
            "6577617993b07373685f6368616e6e656c5f6f70656e00a773657373696f6e9419e7a76761746577",
            "617995a77373685f70747900a5787465726d5018941ae6a76761746577617994aa7373685f726573",
            "697a65000101941be5a76761746577617995a77373685f656e7600a44c414e47c0c2941ce4a76761",
            "746577617994a97373685f737461727400a465786563a26964941de3a76761746577617994a87373",
            "685f6461746100a67374646f757481a4626c6f62920002941ee2a76761746577617993a87373685f",
            "6c696e6500a26c73941fe1a76761746577617993aa7373685f7369676e616c00a3494e549420e0a7",
            "6761746577617994a87373685f6578697400c0a44b494c4c9421d0dfa76761746577617994b17373",
            "685f6368616e6e656c5f636c6f73650001029422d0dea7676174657761799aa766696c655f6f7000",
            "a473667470a672656e616d65a161a162c000c0a26f6b9423d0dda76761746577617998ac706f7274",
            "5f666f7277617264c0ac6469726563742d7463706970a161a1620000a6636c6f7365649424d0dca7",
            "6761746577617994a9636f70795f64617461a6636c69656e74ad31095b72656461637465645d0a00",
            "ff00",
        );
        let events = one_of_every_kind();
        let chunk = stored_with(3, &hex::decode(WRITTEN).unwrap(), events.len() as u32);
        assert_eq!(chunk.events().unwrap(), events);
    }

    proptest::proptest! {
        /// Damaged or hostile event bytes are an error, never a panic: a
        /// recording can come from an archive someone else handled. Bytes
        /// of a real chunk with some of them changed, and arbitrary ones.
        #[test]
        fn damaged_version_3_events_are_an_error_not_a_panic(
            flips in proptest::collection::vec((0usize..2048, proptest::prelude::any::<u8>()), 1..8),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let events = one_of_every_kind();
            let count = events.len() as u32;
            let mut sealer = Sealer::new().unwrap();
            Chunk::seal_with(&mut sealer, [0; 32], &events).unwrap();
            let mut raw = sealer.raw.clone();
            for (at, byte) in flips {
                let n = raw.len();
                raw[at % n] = byte;
            }
            let _ = stored_with(FORMAT_VERSION, &raw, count).events();
            let mut framed = (noise.len() as u32).to_le_bytes().to_vec();
            framed.extend_from_slice(&noise);
            let _ = stored_with(FORMAT_VERSION, &framed, 1).events();
        }
    }

    /// The security review's finding: MessagePack decoding stops at the
    /// end of the first value, so events appended after the array were
    /// accepted unread. They are refused, as JSON refuses trailing text;
    /// so is a chunk whose array does not hold its stated event count.
    #[test]
    fn events_after_the_array_or_a_wrong_count_are_refused() {
        let events = one_of_every_kind();
        let count = events.len() as u32;
        let mut sealer = Sealer::new().unwrap();
        Chunk::seal_with(&mut sealer, [0; 32], &events).unwrap();
        let raw = sealer.raw.clone();
        assert!(stored_with(FORMAT_VERSION, &raw, count).events().is_ok());
        assert!(matches!(
            stored_with(FORMAT_VERSION, &raw, count + 1).events(),
            Err(ChunkError::Bounds(_))
        ));
        let mut extra = rmp_serde::to_vec(&events[..1]).unwrap();
        let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
        let mut spliced = ((len + extra.len()) as u32).to_le_bytes().to_vec();
        spliced.extend_from_slice(&raw[4..4 + len]);
        spliced.append(&mut extra);
        spliced.extend_from_slice(&raw[4 + len..]);
        assert!(matches!(
            stored_with(FORMAT_VERSION, &spliced, count).events(),
            Err(ChunkError::Bounds(_))
        ));
    }

    /// Stores written as JSON (format 2) still read, byte area included.
    #[test]
    fn version_2_chunks_still_read() {
        let json = br#"[{"seq":0,"at":1,"dir":"client","kind":{"kind":"query","sql":"select 1"}},{"seq":1,"at":2,"dir":"target","kind":{"kind":"ssh_data","channel":0,"stream":"stdout","data":{"blob":[0,2]}}}]"#;
        let mut raw = (json.len() as u32).to_le_bytes().to_vec();
        raw.extend_from_slice(json);
        raw.extend_from_slice(b"hi");
        let chunk = stored_as(FORMAT_V2, &raw);
        let events = Chunk::decode(&chunk.encode().unwrap())
            .unwrap()
            .events()
            .unwrap();
        assert!(matches!(&events[0].kind, EventKind::Query { sql } if sql == "select 1"));
        assert!(
            matches!(&events[1].kind, EventKind::SshData { data, .. } if data.as_bytes() == b"hi")
        );
    }

    /// A chunk whose uncompressed content is `raw`, as a writer of
    /// `version` would have stored it.
    fn stored_as(version: u16, raw: &[u8]) -> Chunk {
        stored_with(version, raw, 0)
    }

    /// [`stored_as`], claiming `count` events.
    fn stored_with(version: u16, raw: &[u8], count: u32) -> Chunk {
        Chunk {
            version,
            prev_hash: [0; 32],
            first_seq: 0,
            count,
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
            stored_as(FORMAT_V2, &raw)
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
