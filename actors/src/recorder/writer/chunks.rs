//! Sizing pending events and cutting them into chunks of about
//! `CHUNK_TARGET` raw bytes.

use super::CHUNK_TARGET;
use crate::recording::{Event, EventKind};
use crate::store::schema::Chunk;

/// Time of the last event in stored chunks, if they decode.
pub(super) fn last_event_at(stored: &[(u32, Vec<u8>)]) -> Option<i64> {
    let (_, bytes) = stored.last()?;
    Chunk::decode(bytes)
        .ok()?
        .events()
        .ok()?
        .last()
        .map(|e| e.at)
}

/// Consecutive runs of events of about `CHUNK_TARGET` each (a single
/// larger event gets a run of its own; recorded strings are capped, so its
/// encoding stays far below `MAX_CHUNK_RAW`).
pub(super) fn chunk_groups(events: &[Event]) -> Vec<&[Event]> {
    let mut groups = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let n = approx_size(&e.kind);
        if size > 0 && size + n > CHUNK_TARGET {
            groups.push(&events[start..i]);
            start = i;
            size = 0;
        }
        size += n;
    }
    groups.push(&events[start..]);
    groups
}

pub(super) fn approx_size(kind: &EventKind) -> usize {
    match kind {
        EventKind::Query { sql } | EventKind::Parse { sql, .. } => sql.len() + 16,
        EventKind::Error { message, .. } | EventKind::Notice { message, .. } => message.len() + 32,
        EventKind::Notification { payload, .. } => payload.len() + 32,
        EventKind::Row { values }
        | EventKind::Bind { params: values, .. }
        | EventKind::FunctionCall { args: values, .. } => {
            values
                .iter()
                .map(|v| v.as_ref().map_or(1, |s| s.len() + 2))
                .sum::<usize>()
                + 8
        }
        EventKind::Columns { names } => names.iter().map(|n| n.len() + 1).sum::<usize>() + 8,
        EventKind::SshData { data, .. } => data.len() + 48,
        _ => 32,
    }
}
