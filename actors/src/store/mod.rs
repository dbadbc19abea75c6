//! The recording store: schema, seals, chain verification, readers (whole
//! sessions in `reader`, pages and time windows in `listing`) and the
//! self-verifying archive format; `packed` bounds a chunk's MessagePack
//! before it is decoded.

pub mod archive;
pub mod listing;
mod packed;
mod reader;
pub mod retention;
pub mod schema;
pub mod seal;
pub mod verify;

/// redb's page cache for the recorder (redb's default is 1 GiB, which it
/// fills as recordings are written: an appliance with a few hundred MiB
/// would run out of memory during one large transfer). Reads of chunks
/// are sequential and each chunk is read once, so a small cache costs
/// little.
pub const WRITER_CACHE_BYTES: usize = 64 << 20;
/// The same for readers (exports, the console, verification).
pub const READER_CACHE_BYTES: usize = 16 << 20;

pub use reader::{RawRecording, RecordingStore, StoreError};
pub use seal::{Seal, SigningKey};
pub use verify::Verdict;
