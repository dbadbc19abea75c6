//! Replacement strategies: what a masked value (or the masked part of a value)
//! becomes. `Null` is decided by the callers (it replaces the whole value); when a
//! replacement string is needed anyway (free text), it renders like `Redact`.

use aws_lc_rs::hmac;

use super::Strategy;

/// The fixed redaction marker.
pub(crate) const REDACTED: &[u8] = b"[redacted]";

/// Append the replacement for the matched bytes `m`.
pub(crate) fn render(strategy: &Strategy, key: &hmac::Key, m: &[u8], out: &mut Vec<u8>) {
    match strategy {
        Strategy::Redact | Strategy::Null => out.extend_from_slice(REDACTED),
        Strategy::Partial { keep } => partial(m, *keep, out),
        Strategy::Hash => hash(key, m, out),
    }
}

/// `hash:` + first 16 hex chars of HMAC-SHA256(key, m).
pub(crate) fn hash(key: &hmac::Key, m: &[u8], out: &mut Vec<u8>) {
    let tag = hmac::sign(key, m);
    out.extend_from_slice(b"hash:");
    let mut hexbuf = [0u8; 16];
    // 8 bytes → 16 hex chars; the buffer size is exact so this cannot fail.
    if hex::encode_to_slice(&tag.as_ref()[..8], &mut hexbuf).is_ok() {
        out.extend_from_slice(&hexbuf);
    }
}

/// Length of the UTF-8 sequence starting with `b` (1 for ASCII and stray bytes).
#[inline]
fn char_len(b: u8) -> usize {
    match b {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

#[inline]
fn kept_verbatim(b: u8) -> bool {
    b == b' ' || b == b'-'
}

/// Every character but the last `keep` becomes `*`; ASCII spaces and dashes are
/// copied and not counted. At most half of the counted characters are revealed.
pub(crate) fn partial(m: &[u8], keep: usize, out: &mut Vec<u8>) {
    let walk = |f: &mut dyn FnMut(&[u8], bool)| {
        let mut i = 0;
        while i < m.len() {
            let len = char_len(m[i]).min(m.len() - i);
            f(&m[i..i + len], kept_verbatim(m[i]));
            i += len;
        }
    };
    let mut total = 0usize;
    walk(&mut |_, verbatim| {
        if !verbatim {
            total += 1;
        }
    });
    let keep = keep.min(total / 2);
    let masked = total - keep;
    let mut seen = 0usize;
    walk(&mut |ch, verbatim| {
        if verbatim {
            out.extend_from_slice(ch);
        } else {
            if seen < masked {
                out.push(b'*');
            } else {
                out.extend_from_slice(ch);
            }
            seen += 1;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32])
    }

    fn r(s: &Strategy, m: &str) -> String {
        let mut out = Vec::new();
        render(s, &key(), m.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn redact_and_null() {
        assert_eq!(r(&Strategy::Redact, "a@b.com"), "[redacted]");
        assert_eq!(r(&Strategy::Null, "a@b.com"), "[redacted]");
    }

    #[test]
    fn partial_keeps_tail_and_separators() {
        let p = Strategy::Partial { keep: 4 };
        assert_eq!(r(&p, "4242 4242 4242 4242"), "**** **** **** 4242");
        assert_eq!(r(&p, "4242-4242-4242-4242"), "****-****-****-4242");
        assert_eq!(r(&p, "4242424242424242"), "************4242");
        assert_eq!(r(&p, "123-45-6789"), "***-**-6789");
        // UTF-8 aware: one '*' per character.
        assert_eq!(r(&p, "müllerstraße"), "********raße");
        // Never reveals more than half.
        assert_eq!(r(&p, "abc"), "**c");
        assert_eq!(r(&p, "ab"), "*b");
        assert_eq!(r(&p, "a"), "*");
        assert_eq!(r(&p, ""), "");
        assert_eq!(r(&Strategy::Partial { keep: 0 }, "secret"), "******");
        // Invalid UTF-8 does not panic.
        let mut out = Vec::new();
        partial(b"\xff\xe2\x82", 1, &mut out);
        assert_eq!(out, b"*\xe2\x82");
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = r(&Strategy::Hash, "alice@example.com");
        assert_eq!(a.len(), 5 + 16);
        assert!(a.starts_with("hash:"));
        assert!(a[5..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, r(&Strategy::Hash, "alice@example.com"));
        assert_ne!(a, r(&Strategy::Hash, "bob@example.com"));
        let mut other = Vec::new();
        hash(
            &hmac::Key::new(hmac::HMAC_SHA256, &[8u8; 32]),
            b"alice@example.com",
            &mut other,
        );
        assert_ne!(a.as_bytes(), &other[..]);
        // Matches an independent HMAC computation.
        let tag = hmac::sign(&key(), b"alice@example.com");
        assert_eq!(&a[5..], &hex::encode(tag.as_ref())[..16]);
    }
}
