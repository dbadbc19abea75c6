//! Secrets: the value after a secret keyword (`password=...`), and long tokens
//! that look random (their block scan and the heuristic).

use memchr::{memchr, memchr2_iter};

use super::blocks::{keep_from, masks_at, runs_at_least, wide};
use super::classes::{ALNUM, HEX, LOWER, TOKEN, UPPER, is, is_digit};
use super::{Detector, Hit, hit};

/// Long tokens (≥ 32 bytes of `[A-Za-z0-9+/_-]`), judged by `is_secret_token`.
pub(super) fn scan_tokens(v: &[u8], out: &mut Vec<Hit>) {
    let n = v.len();
    if n < 32 {
        return;
    }
    let mut cur = masks_at::<false, false, false, true>(v, 0);
    let mut resume = 0usize;
    for k in 0..n.div_ceil(64) {
        let o = k * 64;
        let next = masks_at::<false, false, false, true>(v, k + 1);
        // The first candidate after `resume` starts a maximal token.
        let mut z = runs_at_least::<32>(wide(cur.token, next.token)) & keep_from(resume, o);
        while z != 0 {
            let s = o + z.trailing_zeros() as usize;
            let mut e = s + 32;
            while e < n && is(v[e], TOKEN) {
                e += 1;
            }
            if is_secret_token(&v[s..e]) {
                let mut pe = e;
                while pe < n && pe - e < 2 && v[pe] == b'=' {
                    pe += 1;
                }
                out.push(hit(s, pe, Detector::SecretKey));
            }
            resume = e;
            z &= keep_from(resume, o);
        }
        cur = next;
    }
}

const KEYWORDS: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"pwd",
    b"secret",
    b"token",
    b"apikey",
    b"api_key",
    b"api-key",
    b"access_key",
    b"accesskey",
    b"private_key",
    b"privatekey",
    b"secret_key",
    b"secretkey",
    b"secret-key",
    b"signing_key",
    b"encryption_key",
    b"session_key",
    b"master_key",
    b"auth_key",
    b"passphrase",
    b"credentials",
    b"authorization",
];

/// `keyword = value` / `keyword: value` (memchr2 for the `=`/`:` first).
pub(crate) fn scan_secret_keywords(v: &[u8], out: &mut Vec<Hit>) {
    let mut floor = 0;
    for p in memchr2_iter(b'=', b':', v) {
        if p < floor {
            continue;
        }
        if let Some((s, e)) = keyword_value(v, p) {
            out.push(hit(s, e, Detector::SecretKey));
            floor = e;
        }
    }
}

fn ends_with_keyword(word: &[u8]) -> bool {
    KEYWORDS
        .iter()
        .any(|k| word.len() >= k.len() && word[word.len() - k.len()..].eq_ignore_ascii_case(k))
}

/// `p` is a '=' or ':'. If the word before it is a secret keyword, the value after it.
fn keyword_value(v: &[u8], p: usize) -> Option<(usize, usize)> {
    let n = v.len();
    let mut k = p;
    while k > 0 && (v[k - 1] == b' ' || v[k - 1] == b'\t') {
        k -= 1;
    }
    if k > 0 && (v[k - 1] == b'"' || v[k - 1] == b'\'') {
        k -= 1;
    }
    let we = k;
    let mut ws = k;
    while ws > 0
        && we - ws < 64
        && (is(v[ws - 1], ALNUM) || matches!(v[ws - 1], b'_' | b'-' | b'.'))
    {
        ws -= 1;
    }
    if ws == we || !ends_with_keyword(&v[ws..we]) {
        return None;
    }
    let skip_ws = |mut s: usize| {
        while s < n && (v[s] == b' ' || v[s] == b'\t') {
            s += 1;
        }
        s
    };
    let mut s = skip_ws(p + 1);
    if v[p] == b':' && s < n && v[s] == b'=' {
        s = skip_ws(s + 1);
    }
    if s >= n {
        return None;
    }
    let q = v[s];
    if q == b'"' || q == b'\'' {
        // Quoted: up to the closing quote not preceded by a backslash (≤ 1 KiB).
        let vs = s + 1;
        let lim = (vs + 1025).min(n);
        let mut from = vs;
        while let Some(o) = memchr(q, &v[from..lim]) {
            let c = from + o;
            if c > vs && v[c - 1] == b'\\' {
                from = c + 1;
                continue;
            }
            if c > vs && c - vs <= 1024 {
                return Some((vs, c));
            }
            break;
        }
        return unquoted_value(v, vs);
    }
    let (vs, mut ve) = unquoted_value(v, s)?;
    // "Authorization: Bearer xyz" → include the credential after the scheme.
    let word = &v[vs..ve];
    if (word.eq_ignore_ascii_case(b"bearer") || word.eq_ignore_ascii_case(b"basic"))
        && ve < n
        && v[ve] == b' '
        && let Some((_, e2)) = unquoted_value(v, ve + 1)
    {
        ve = e2;
    }
    Some((vs, ve))
}

fn unquoted_value(v: &[u8], vs: usize) -> Option<(usize, usize)> {
    let mut ve = vs;
    while ve < v.len()
        && !(v[ve].is_ascii_whitespace()
            || matches!(
                v[ve],
                b',' | b';' | b'&' | b')' | b'}' | b']' | b'"' | b'\'' | b'<' | b'>'
            ))
    {
        ve += 1;
    }
    (ve > vs).then_some((vs, ve))
}

/// The long-token heuristic; `t` is ≥ 32 bytes of `[A-Za-z0-9+/_-]`.
///
/// - more than 1/6 separators (`+/_-`) → not a secret (paths, identifiers);
/// - separators `/_-` without both letter cases (slugs, snake_case, paths, UUIDs):
///   only the longest segment is judged, and only if it has ≥ 20 chars
///   (`secret_<hex>` style);
/// - otherwise [`looks_random`].
pub(crate) fn is_secret_token(t: &[u8]) -> bool {
    if t.len() < 32 {
        return false;
    }
    let seps = t
        .iter()
        .filter(|&&b| matches!(b, b'+' | b'/' | b'_' | b'-'))
        .count();
    if seps * 6 > t.len() {
        return false;
    }
    let has_word_sep = t.iter().any(|&b| matches!(b, b'/' | b'_' | b'-'));
    let mixed_case = t.iter().any(u8::is_ascii_uppercase) && t.iter().any(u8::is_ascii_lowercase);
    if has_word_sep && !mixed_case {
        let longest = t
            .split(|&b| matches!(b, b'+' | b'/' | b'_' | b'-'))
            .max_by_key(|s| s.len())
            .unwrap_or_default();
        return longest.len() >= 20 && looks_random(longest, 3.5);
    }
    looks_random(t, 4.0)
}

/// Random-looking: hex with digits and letters and entropy ≥ 3.0; or digits and
/// letters (or ≥ 30 % of each letter case) with entropy ≥ `min_entropy` and short
/// same-case letter runs (mean < 3: CamelCase words have long lowercase runs).
fn looks_random(t: &[u8], min_entropy: f64) -> bool {
    let (mut upper, mut lower, mut digit) = (0usize, 0usize, 0usize);
    let mut hex_only = true;
    let mut counts = [0u32; 128];
    // Same-case letter runs: count of runs (letters / runs = mean run length).
    let mut runs = 0usize;
    let mut prev_class = 0u8;
    for &b in t {
        counts[(b & 0x7f) as usize] += 1;
        let class = if b.is_ascii_uppercase() {
            upper += 1;
            UPPER
        } else if b.is_ascii_lowercase() {
            lower += 1;
            LOWER
        } else {
            if is_digit(b) {
                digit += 1;
            }
            0
        };
        if class != 0 && class != prev_class {
            runs += 1;
        }
        prev_class = class;
        if !is(b, HEX) {
            hex_only = false;
        }
    }
    let len = t.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum();
    let letters = upper + lower;
    if hex_only {
        return digit > 0 && letters > 0 && entropy >= 3.0;
    }
    let classes_ok = (digit > 0 && letters > 0)
        || (upper > 0 && lower > 0 && upper * 10 >= letters * 3 && lower * 10 >= letters * 3);
    classes_ok && entropy >= min_entropy && letters < 3 * runs
}

#[cfg(test)]
mod tests {
    use super::super::tests::found;
    use super::*;

    #[test]
    fn secret_keywords() {
        let d = Detector::SecretKey;
        assert_eq!(found(d, "db_password=hunter2 next"), ["hunter2"]);
        assert_eq!(found(d, "password: 'p a s s' x"), ["p a s s"]);
        assert_eq!(
            found(d, r#"{"api_key": "abc\"def", "n": 1}"#),
            [r#"abc\"def"#]
        );
        assert_eq!(found(d, "?token=abc123&x=1"), ["abc123"]);
        assert_eq!(
            found(d, "Authorization: Bearer opaque123 rest"),
            ["Bearer opaque123"]
        );
        assert_eq!(found(d, "SECRET_KEY := s3cr3t"), ["s3cr3t"]);
        assert!(found(d, "password=").is_empty());
        assert!(found(d, "at 10:30 the secretary: Bob").is_empty());
        assert!(found(d, "Key (password)=(hunter2)").is_empty());
    }

    #[test]
    fn secret_tokens() {
        let d = Detector::SecretKey;
        let gh = "ghp_4f8Kq2LmZ9xR7tYw1bNc3vDe5gHj6kP0sTuV";
        assert_eq!(found(d, &format!("use {gh} here")), [gh]);
        let b64 = "dGhpc0lzQVJhbmRvbUJhc2U2NFNlY3JldEtleTEyMzQ=";
        assert_eq!(found(d, b64), [b64]);
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(found(d, hex), [hex]);
        let letters = "QzTxBwLkRmVnPyHsJdGcFaXeUqWoIrTbN";
        assert_eq!(found(d, letters), [letters]);
        let prefixed = "secret_7f3a9c2e8b1d4f6a0c5e9b2d7f1a3c8e";
        assert_eq!(found(d, prefixed), [prefixed]);
        for t in [
            "sk_live_51H8zLmJk2x9QwErTyUiOpAsDfGhJkL",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        ] {
            assert_eq!(found(d, t), [t]);
        }
        for not in [
            "550e8400-e29b-41d4-a716-446655440000",
            "the quick brown fox jumps over the lazy dog again and again",
            "internationalization_and_localization_settings",
            "AbstractSingletonProxyFactoryBeanConfiguration",
            "supercalifragilisticexpialidocious_supercalifragilistic",
            "/usr/local/lib/python3/site-packages/module/submodule/x",
            "00000000000000000000000000000000000000",
            "abababababababababababababababab1",
            "state-of-the-art-machine-learning-based-approach",
            "idx_customer_orders_created_at_2024_01",
            "report_2024_q1_final_v2_reviewed_by_legal",
            "my-project-name-2024-build-artifact",
            "CustomerOrderLineItem2024RevisionHistory",
            "HKEY_LOCAL_MACHINE/SOFTWARE/Microsoft/Windows/CurrentVersion",
            "com/example/gatehouse/proxy/PostgresRelayHandler",
            "THISISALLCAPSWITHDIGITS2024REPORTX",
        ] {
            assert!(found(d, not).is_empty(), "{not}");
        }
    }

    /// Random base64/hex tokens are detected nearly always (deterministic PRNG).
    #[test]
    fn secret_token_recall() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b64url = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let hex = b"0123456789abcdef";
        for (alphabet, len) in [
            (&b64[..], 32),
            (&b64[..], 40),
            (&b64url[..], 32),
            (&b64[..62], 32),
            (&hex[..], 32),
        ] {
            let mut hits = 0;
            for _ in 0..2000 {
                let t: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                hits += usize::from(is_secret_token(&t));
            }
            assert!(
                hits >= 1980,
                "recall {hits}/2000 for {} chars of {:?}",
                len,
                String::from_utf8_lossy(alphabet)
            );
        }
    }
}
