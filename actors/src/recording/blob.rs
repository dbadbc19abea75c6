//! The byte area of a stored chunk: where SSH stream bytes go raw.
//!
//! Bytes an agent or target sent are not text: encoding them for JSON
//! (escapes, or base64 and then the JSON string scan) cost a third of the
//! gateway's CPU in a bulk transfer (bench/ssh.sh), when chunks held JSON
//! (format 2; MessagePack since format 3). Inside a chunk, an
//! [`SshBytes`](super::SshBytes) is written as `{"blob": [offset, length]}`
//! into the chunk's byte area instead; exports and `--json` output still
//! get `text` or `base64`.
//!
//! The area is attached to the thread for exactly one serialisation or
//! deserialisation ([`Sink`], [`Source`]): serde gives a `Serialize` impl
//! no other way to reach it. Both guards detach on drop, errors included.

use std::cell::RefCell;
use std::marker::PhantomData;

/// The area being read and how far: references must follow each other in
/// order, each read once, so a hostile chunk cannot make a few bytes of
/// JSON point at the same megabytes again and again.
struct Reading {
    area: Vec<u8>,
    at: u64,
}

thread_local! {
    static SINK: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    static SOURCE: RefCell<Option<Reading>> = const { RefCell::new(None) };
}

/// Keeps a guard on the thread that attached it (not `Send`): dropped
/// elsewhere, it would detach another thread's area.
type SameThread = PhantomData<*const ()>;

/// While alive, stream bytes serialised on this thread go to its area.
pub struct Sink(SameThread);

impl Sink {
    /// Collect into `area` (cleared; passed in so its allocation is reused).
    pub fn attach(mut area: Vec<u8>) -> Sink {
        area.clear();
        SINK.with_borrow_mut(|s| {
            debug_assert!(s.is_none(), "a byte area is already attached");
            *s = Some(area)
        });
        Sink(PhantomData)
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
pub struct Source(SameThread);

impl Source {
    pub fn attach(area: Vec<u8>) -> Source {
        SOURCE.with_borrow_mut(|s| {
            debug_assert!(s.is_none(), "a byte area is already attached");
            *s = Some(Reading { area, at: 0 })
        });
        Source(PhantomData)
    }

    /// Whether every byte of the area was referenced: a chunk with bytes
    /// no event claims is damaged.
    pub fn all_read(&self) -> bool {
        SOURCE.with_borrow(|s| s.as_ref().is_some_and(|r| r.at == r.area.len() as u64))
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        SOURCE.with_borrow_mut(|s| *s = None);
    }
}

/// The bytes at `[offset, offset + length)` of the attached area, which
/// must start where the previous reference ended.
pub(super) fn load(offset: u64, length: u64) -> Result<Vec<u8>, &'static str> {
    SOURCE.with_borrow_mut(|s| {
        let r = s
            .as_mut()
            .ok_or("a blob reference outside a stored chunk")?;
        if offset != r.at {
            return Err("a blob reference out of order");
        }
        let end = offset
            .checked_add(length)
            .filter(|&end| end <= r.area.len() as u64)
            .ok_or("a blob reference out of range")?;
        r.at = end;
        Ok(r.area[offset as usize..end as usize].to_vec())
    })
}
