//! The recording store: schema, seals, chain verification, readers and the
//! self-verifying archive format.

pub mod archive;
mod reader;
pub mod retention;
pub mod schema;
pub mod seal;
pub mod verify;

pub use reader::{RawRecording, RecordingStore, StoreError};
pub use seal::{Seal, SigningKey};
pub use verify::Verdict;
