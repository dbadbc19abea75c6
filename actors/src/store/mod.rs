//! The recording store: schema, seals, chain verification and readers.

mod reader;
pub mod schema;
pub mod seal;
pub mod verify;

pub use reader::{RecordingStore, StoreError};
pub use seal::{Seal, SigningKey};
pub use verify::Verdict;
