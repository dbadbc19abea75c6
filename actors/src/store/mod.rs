//! The recording store: schema, the writer's transactions and readers.

mod reader;
pub mod schema;

pub use reader::{RecordingStore, StoreError};
