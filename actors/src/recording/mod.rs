//! The recording model, shared by the recorder, the readers and exports.
//!
//! Layout: `event` the header and event types (the stored model), `blob`
//! the byte area stream bytes take inside a stored chunk, `text`
//! the one-line-per-event rendering, `asciicast` the asciinema replay file.

mod asciicast;
pub mod blob;
mod event;
mod text;

pub use asciicast::write_asciicast;
pub use event::{Direction, Event, EventKind, Outcome, RecordingId, SessionHeader, SshBytes};
pub use text::{clean, describe, format_event, format_header, format_time};
