//! The byte area of a stored chunk: where SSH stream bytes go raw.
//!
//! A chunk's events are JSON, but bytes an agent or target sent are not
//! text: encoding them for JSON (escapes, or base64 and then the JSON
//! string scan) cost a third of the gateway's CPU in a bulk transfer
//! (bench/ssh.sh). Inside a chunk, an [`SshBytes`](super::SshBytes) is
//! written as `{"blob": [offset, length]}` into the chunk's byte area
//! instead; exports and `--json` output still get `text` or `base64`.
//!
//! The area is attached to the thread for exactly one serialisation or
//! deserialisation ([`Sink`], [`Source`]): serde gives a `Serialize` impl
//! no other way to reach it. Both guards detach on drop, errors included.

use std::cell::RefCell;

thread_local! {
    static SINK: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    static SOURCE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// While alive, stream bytes serialised on this thread go to its area.
pub struct Sink(());

impl Sink {
    /// Collect into `area` (cleared; passed in so its allocation is reused).
    pub fn attach(mut area: Vec<u8>) -> Sink {
        area.clear();
        SINK.with_borrow_mut(|s| *s = Some(area));
        Sink(())
    }

    /// Detach and return the area.
    pub fn finish(self) -> Vec<u8> {
        SINK.with_borrow_mut(Option::take).unwrap_or_default()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        SINK.with_borrow_mut(|s| *s = None);
    }
}

/// Append `bytes` to the attached area: `Some((offset, length))`, or
/// `None` when no sink is attached (exports, logs).
pub(super) fn store(bytes: &[u8]) -> Option<(u64, u64)> {
    SINK.with_borrow_mut(|s| {
        let area = s.as_mut()?;
        let at = area.len() as u64;
        area.extend_from_slice(bytes);
        Some((at, bytes.len() as u64))
    })
}

/// While alive, `blob` references deserialised on this thread read `area`.
pub struct Source(());

impl Source {
    pub fn attach(area: Vec<u8>) -> Source {
        SOURCE.with_borrow_mut(|s| *s = Some(area));
        Source(())
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        SOURCE.with_borrow_mut(|s| *s = None);
    }
}

/// The bytes at `[offset, offset + length)` of the attached area.
pub(super) fn load(offset: u64, length: u64) -> Result<Vec<u8>, &'static str> {
    SOURCE.with_borrow(|s| {
        let area = s
            .as_ref()
            .ok_or("a blob reference outside a stored chunk")?;
        let end = offset
            .checked_add(length)
            .ok_or("a blob reference out of range")?;
        if end > area.len() as u64 {
            return Err("a blob reference out of range");
        }
        Ok(area[offset as usize..end as usize].to_vec())
    })
}
