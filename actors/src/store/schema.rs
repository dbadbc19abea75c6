//! The on-disk format of `recordings.redb`, in one place.
//!
//! ```text
//! sessions : u128 (RecordingId)        -> JSON SessionHeader
//! chunks   : (u128 RecordingId, u32 n) -> Chunk (postcard)
//! ```
//!
//! A chunk is a batch of consecutive events of one session, serialised with
//! postcard and compressed with zstd. Each chunk carries the SHA-256 of the
//! previous chunk of the same session (all zeros for the first), so a chunk
//! that is altered, removed or reordered breaks the chain. Headers are JSON
//! because they are small, read often and must stay readable by future
//! versions; events are postcard because they are many and written on the
//! hot path. `FORMAT_VERSION` guards the event encoding.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::recording::Event;

pub const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
pub const CHUNKS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("chunks");

/// Version of the event encoding inside chunks.
pub const FORMAT_VERSION: u16 = 1;

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
    #[error("chunk compression: {0}")]
    Compression(#[from] std::io::Error),
    #[error("chunk format version {0} is not supported")]
    Version(u16),
}

impl Chunk {
    pub fn seal(prev_hash: [u8; 32], events: &[Event]) -> Result<Chunk, ChunkError> {
        let raw = postcard::to_allocvec(events)?;
        Ok(Chunk {
            version: FORMAT_VERSION,
            prev_hash,
            first_seq: events.first().map_or(0, |e| e.seq),
            count: events.len() as u32,
            compressed: zstd::bulk::compress(&raw, ZSTD_LEVEL)?,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, ChunkError> {
        Ok(postcard::to_allocvec(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Chunk, ChunkError> {
        let chunk: Chunk = postcard::from_bytes(bytes)?;
        if chunk.version != FORMAT_VERSION {
            return Err(ChunkError::Version(chunk.version));
        }
        Ok(chunk)
    }

    pub fn events(&self) -> Result<Vec<Event>, ChunkError> {
        // Bound decompression by what a chunk may legitimately hold so a
        // corrupted size field cannot exhaust memory.
        let raw = zstd::bulk::decompress(&self.compressed, MAX_CHUNK_RAW)?;
        Ok(postcard::from_bytes(&raw)?)
    }
}

/// The hash the next chunk must carry: SHA-256 over the stored bytes.
pub fn chain_hash(stored: &[u8]) -> [u8; 32] {
    Sha256::digest(stored).into()
}

/// The recorder cuts a chunk before its raw size passes this, and readers
/// refuse to inflate more.
pub const MAX_CHUNK_RAW: usize = 64 << 20;
