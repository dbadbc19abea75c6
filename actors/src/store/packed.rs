//! Bounds on a chunk's MessagePack events, checked before they are decoded.
//!
//! A chunk can come from an archive someone else handled, so its bytes are
//! untrusted. MessagePack writes a NULL in one byte, and serde turns each
//! value into tens of bytes in memory (an internally tagged enum buffers
//! its fields first): a few KB of compressed chunk could ask for GBs.
//! Nesting can be deep enough to exhaust the stack, a container can claim
//! billions of items, and bytes after the event array would be ignored.
//! [`check`] walks the encoding once, without recursion or allocation
//! beyond a small stack, and refuses all four before serde sees it.
//!
//! The bounds are far above what the recorder writes: a chunk is cut at
//! about 1 MiB of events (so at most about a million values), a single
//! event holds at most 65,535 values (PostgreSQL's limit on a row's
//! columns and a Bind's parameters), and events nest five deep.

/// Most containers open at once: an event array, an event, its kind, a
/// list of values, a tuple in it. Decoding recurses once per level.
const MAX_DEPTH: usize = 16;

/// Most values in one chunk. At about 60 bytes of memory each once
/// decoded, the bound keeps a chunk's decoded size within a few hundred
/// MiB whatever its bytes say, as JSON's own size bounded format 2.
const MAX_VALUES: u64 = 4 << 20;

/// Why a chunk's events were refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Bounds {
    #[error("the events are not an array of {0} events")]
    Count(u32),
    #[error("the events nest deeper than {MAX_DEPTH}")]
    Depth,
    #[error("the events hold more than {MAX_VALUES} values")]
    Values,
    #[error("a value runs past the events, or claims more items than bytes remain")]
    Truncated,
    #[error("bytes follow the event array")]
    Trailing,
    #[error("a byte no MessagePack value starts with")]
    Marker,
}

/// Check that `bytes` is exactly one MessagePack array of `count` items,
/// within the bounds above.
pub fn check(bytes: &[u8], count: u32) -> Result<(), Bounds> {
    let mut at = 0usize;
    // Items still to read in each open container.
    let mut open: Vec<u64> = Vec::with_capacity(MAX_DEPTH);
    let mut values = 0u64;
    let first = value(bytes, &mut at)?;
    if first.items != Some(u64::from(count)) || first.is_map {
        return Err(Bounds::Count(count));
    }
    open.push(u64::from(count));
    while let Some(left) = open.last_mut() {
        if *left == 0 {
            open.pop();
            continue;
        }
        *left -= 1;
        values += 1;
        if values > MAX_VALUES {
            return Err(Bounds::Values);
        }
        if let Some(items) = value(bytes, &mut at)?.items {
            if open.len() == MAX_DEPTH {
                return Err(Bounds::Depth);
            }
            open.push(items);
        }
    }
    if at != bytes.len() {
        return Err(Bounds::Trailing);
    }
    Ok(())
}

/// One value's header read at `at`: scalars and strings are skipped
/// whole; a container reports how many items follow it.
struct Header {
    items: Option<u64>,
    is_map: bool,
}

fn value(bytes: &[u8], at: &mut usize) -> Result<Header, Bounds> {
    let marker = take(bytes, at, 1)?[0];
    let scalar = |skip: usize, at: &mut usize| {
        take(bytes, at, skip)?;
        Ok(Header {
            items: None,
            is_map: false,
        })
    };
    let container = |n: u64, is_map: bool, at: &mut usize| {
        let items = if is_map { n * 2 } else { n };
        // Every item takes at least a byte: a header claiming more than
        // the bytes left is damage, refused before anything is reserved.
        if items > (bytes.len() - *at) as u64 {
            return Err(Bounds::Truncated);
        }
        Ok(Header {
            items: Some(items),
            is_map,
        })
    };
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => scalar(0, at),
        0x80..=0x8f => container(u64::from(marker & 0x0f), true, at),
        0x90..=0x9f => container(u64::from(marker & 0x0f), false, at),
        0xa0..=0xbf => scalar(usize::from(marker & 0x1f), at),
        0xc1 => Err(Bounds::Marker),
        // bin 8/16/32 and str 8/16/32: a length, then the bytes.
        0xc4..=0xc6 | 0xd9..=0xdb => {
            let n = length(bytes, at, width(marker))?;
            scalar(n, at)
        }
        // ext 8/16/32: a length, a type byte, the data.
        0xc7..=0xc9 => {
            let n = length(bytes, at, width(marker))?;
            scalar(n + 1, at)
        }
        0xca => scalar(4, at),
        0xcb => scalar(8, at),
        0xcc | 0xd0 => scalar(1, at),
        0xcd | 0xd1 => scalar(2, at),
        0xce | 0xd2 => scalar(4, at),
        0xcf | 0xd3 => scalar(8, at),
        // fixext 1/2/4/8/16: a type byte, then the data.
        0xd4..=0xd8 => scalar(1 + (1 << (marker - 0xd4)), at),
        // array 16/32, map 16/32: a length, then the items.
        0xdc..=0xdf => {
            let n = length(bytes, at, width(marker))?;
            container(n as u64, marker >= 0xde, at)
        }
    }
}

/// How many bytes the length after a sized marker takes: the 8, 16 and
/// 32-bit forms of bin, ext and str sit in runs of three, array and map
/// have only 16 and 32.
fn width(marker: u8) -> usize {
    match marker {
        0xc4 | 0xc7 | 0xd9 => 1,
        0xc5 | 0xc8 | 0xda | 0xdc | 0xde => 2,
        _ => 4,
    }
}

/// A big-endian length of `width` bytes.
fn length(bytes: &[u8], at: &mut usize, width: usize) -> Result<usize, Bounds> {
    Ok(take(bytes, at, width)?
        .iter()
        .fold(0usize, |n, b| (n << 8) | usize::from(*b)))
}

/// The next `n` bytes, moving `at` past them.
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], Bounds> {
    let end = at
        .checked_add(n)
        .filter(|end| *end <= bytes.len())
        .ok_or(Bounds::Truncated)?;
    let out = &bytes[*at..end];
    *at = end;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed<T: serde::Serialize>(v: &T) -> Vec<u8> {
        rmp_serde::to_vec(v).unwrap()
    }

    #[test]
    fn what_the_recorder_writes_passes() {
        let v = (
            vec![Some("a".to_owned()), None],
            -5i64,
            u64::MAX,
            1.5f64,
            'x',
        );
        let bytes = packed(&vec![v.clone(), v]);
        assert_eq!(check(&bytes, 2), Ok(()));
    }

    /// Every sized form, as rmp-serde writes it (long strings, arrays and
    /// maps past 15 items, every integer width, floats) or by hand (bin,
    /// ext, fixext), is skipped whole: the walk ends exactly at the end.
    #[test]
    fn every_marker_is_walked() {
        use std::collections::BTreeMap;
        let map: BTreeMap<u32, u8> = (0..20).map(|i| (i, i as u8)).collect();
        let v = (
            "x".repeat(40),
            "y".repeat(300),
            "z".repeat(70_000),
            vec![0u8; 20],
            vec![1u16; 70_000],
            map,
            (u8::MAX, u16::MAX, u32::MAX, u64::MAX),
            (i8::MIN, i16::MIN, i32::MIN, i64::MIN),
            (1.5f32, 2.5f64),
        );
        let mut bytes = vec![0x92];
        bytes.extend_from_slice(&packed(&v));
        // An array of: bin 8/16/32, ext 8/16/32, fixext 1/2/4/8/16, nil,
        // false, true.
        bytes.extend_from_slice(&[0x9e, 0xc4, 1, 0xaa, 0xc5, 0, 1, 0xaa]);
        bytes.extend_from_slice(&[0xc6, 0, 0, 0, 1, 0xaa]);
        bytes.extend_from_slice(&[0xc7, 1, 7, 0xaa, 0xc8, 0, 1, 7, 0xaa]);
        bytes.extend_from_slice(&[0xc9, 0, 0, 0, 1, 7, 0xaa]);
        for n in [1usize, 2, 4, 8, 16] {
            bytes.push(0xd4 + n.trailing_zeros() as u8);
            bytes.push(7);
            bytes.resize(bytes.len() + n, 0xaa);
        }
        bytes.extend_from_slice(&[0xc0, 0xc2, 0xc3]);
        assert_eq!(check(&bytes, 2), Ok(()));
        // One byte short anywhere in the hand-made part is refused.
        assert_eq!(check(&bytes[..bytes.len() - 4], 2), Err(Bounds::Truncated));
    }

    #[test]
    fn the_array_must_hold_the_chunks_event_count() {
        let bytes = packed(&vec![1u8, 2, 3]);
        assert_eq!(check(&bytes, 2), Err(Bounds::Count(2)));
        assert_eq!(check(&packed(&7u8), 1), Err(Bounds::Count(1)));
    }

    /// The review's finding: a second array after the first was read as
    /// nothing at all.
    #[test]
    fn bytes_after_the_events_are_refused() {
        let mut bytes = packed(&vec![1u8]);
        bytes.extend_from_slice(&packed(&vec!["drop table audit"]));
        assert_eq!(check(&bytes, 1), Err(Bounds::Trailing));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut bytes = vec![0x91; 100_000];
        bytes.push(0xc0);
        assert_eq!(check(&bytes, 1), Err(Bounds::Depth));
    }

    #[test]
    fn a_container_claiming_more_items_than_bytes_is_refused() {
        // An array of one event that claims 2^32 - 1 values.
        let bytes = [0x91, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0];
        assert_eq!(check(&bytes, 1), Err(Bounds::Truncated));
        // A string longer than what is left.
        assert_eq!(check(&[0x91, 0xd9, 0x09, b'a'], 1), Err(Bounds::Truncated));
    }

    /// The review's finding: 64 MiB of NULLs in one row compress to 2 KB
    /// and decoded to 3.5 GB.
    #[test]
    fn more_values_than_any_chunk_holds_are_refused() {
        let nulls = MAX_VALUES as usize;
        let mut bytes = vec![0x91, 0xdd];
        bytes.extend_from_slice(&(nulls as u32).to_be_bytes());
        bytes.resize(bytes.len() + nulls, 0xc0);
        assert_eq!(check(&bytes, 1), Err(Bounds::Values));
        // One fewer, with the event itself counted, passes.
        let mut fits = vec![0x91, 0xdd];
        fits.extend_from_slice(&(nulls as u32 - 1).to_be_bytes());
        fits.resize(fits.len() + nulls - 1, 0xc0);
        assert_eq!(check(&fits, 1), Ok(()));
    }

    #[test]
    fn the_unused_marker_is_refused() {
        assert_eq!(check(&[0x91, 0xc1], 1), Err(Bounds::Marker));
    }
}
