//! A second, deliberately plain implementation of the PostgreSQL wire
//! format, written from the protocol documentation rather than from
//! `pg::codec`: the targets re-encode what the gateway decoded with it and
//! compare bytes, so a decoder that drops, reorders or invents a field is
//! caught, not only one that panics.

/// Append a NUL-terminated string.
pub fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

pub fn i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A length-prefixed value, `-1` for NULL.
pub fn value(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => i32(out, -1),
        Some(v) => {
            i32(out, v.len() as i32);
            out.extend_from_slice(v);
        }
    }
}

/// A whole tagged frame around `body`.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    i32(&mut out, body.len() as i32 + 4);
    out.extend_from_slice(body);
    out
}

/// Bytes of a decoded text field, whether the decoder hands out `&str` or
/// `&[u8]` (client text is moving from the one to the other).
pub fn b<T: AsRef<[u8]> + ?Sized>(t: &T) -> &[u8] {
    t.as_ref()
}

/// Where to cut a buffer of `len` bytes to check that every prefix is
/// handled: all of them for short inputs, an even spread for long ones so
/// one execution stays cheap.
pub fn cuts(len: usize) -> impl Iterator<Item = usize> {
    let step = if len <= 256 { 1 } else { len / 128 };
    (0..len).step_by(step.max(1))
}
