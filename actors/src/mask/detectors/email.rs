//! E-mail addresses: `memchr` for each `@`, then a byte walk over the local part,
//! the domain labels and the TLD.

use memchr::memrchr;

use super::classes::{ALPHA, DOMAIN, HIGH, LOCAL, is};
use super::{Detector, Hit, hit};

pub(crate) fn scan_email(v: &[u8], out: &mut Vec<Hit>) {
    let n = v.len();
    let mut floor = 0;
    for at in memchr::memchr_iter(b'@', v) {
        if at < floor {
            continue;
        }
        // Local part, backwards; '@' is not a LOCAL byte so this stops at the previous '@'.
        let mut s = at;
        while s > floor && is(v[s - 1], LOCAL) {
            s -= 1;
        }
        while s < at && v[s] == b'.' {
            s += 1;
        }
        if s == at {
            continue;
        }
        // Domain: labels separated by single dots.
        let ds = at + 1;
        let mut e = ds;
        loop {
            let ls = e;
            while e < n && is(v[e], DOMAIN) {
                e += 1;
            }
            if e > ls && e + 1 < n && v[e] == b'.' && is(v[e + 1], DOMAIN) {
                e += 1;
            } else {
                break;
            }
        }
        // TLD: letters (≥ 2) at the start of the last label, or punycode; else drop the label.
        let mut end = e;
        let matched = loop {
            let Some(dot) = memrchr(b'.', &v[ds..end]) else {
                break None;
            };
            let ts = ds + dot + 1;
            if v[ts..end].len() >= 4 && v[ts..ts + 4].eq_ignore_ascii_case(b"xn--") {
                break Some(end);
            }
            let mut t = ts;
            while t < end && is(v[t], ALPHA | HIGH) {
                t += 1;
            }
            if t - ts >= 2 {
                break Some(t);
            }
            end = ds + dot;
        };
        if let Some(t) = matched {
            out.push(hit(s, t, Detector::Email));
            floor = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::found;
    use super::*;

    #[test]
    fn email() {
        let d = Detector::Email;
        assert_eq!(found(d, "mail a@b.com now"), ["a@b.com"]);
        assert_eq!(
            found(d, "x alice.smith+tag@mail.example.co.uk."),
            ["alice.smith+tag@mail.example.co.uk"]
        );
        assert_eq!(found(d, "(bob@example.org)"), ["bob@example.org"]);
        assert_eq!(found(d, "müller@bücher.de"), ["müller@bücher.de"]);
        assert_eq!(found(d, "a@b.com,c@d.org"), ["a@b.com", "c@d.org"]);
        assert_eq!(found(d, "..x@y.io"), ["x@y.io"]);
        assert_eq!(found(d, "u@example.com2024"), ["u@example.com"]);
        assert_eq!(found(d, "u@b.example.c0m"), ["u@b.example"]);
        assert_eq!(
            found(d, "u@xn--80ak6aa92e.xn--p1ai"),
            ["u@xn--80ak6aa92e.xn--p1ai"]
        );
        assert!(found(d, "user@localhost").is_empty());
        assert!(found(d, "@example.com").is_empty());
        assert!(found(d, "a@.com").is_empty());
        assert!(found(d, "a@b.c").is_empty());
        assert!(found(d, "price @ 5.00").is_empty());
        assert!(found(d, "@@@@ a@@b.com").is_empty());
        assert!(found(d, "").is_empty());
    }
}
