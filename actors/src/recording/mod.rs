//! The recording model, shared by the recorder, the readers and exports.

mod event;
mod text;

pub use event::{Direction, Event, EventKind, Outcome, RecordingId, SessionHeader};
pub use text::{clean, format_event, format_header, format_time};
