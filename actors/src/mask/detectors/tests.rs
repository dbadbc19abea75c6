//! Shared test helpers, and the block scanners (cards/SSNs, IBANs, long tokens)
//! checked against plain byte-loop references.

use super::classes::{ALNUM, ALPHA, TOKEN, is, is_digit};
use super::iban::{iban_at, scan_iban};
use super::numbers::{analyze_run, expand_run, scan_numbers};
use super::secrets::{is_secret_token, scan_tokens};
use super::{Detector, Hit, Source, detect, hit};

pub(super) fn found(d: Detector, s: &str) -> Vec<&str> {
    detect(d, s.as_bytes()).into_iter().map(|r| &s[r]).collect()
}

#[derive(Clone, Copy)]
struct Wants {
    card: bool,
    ssn: bool,
    iban: bool,
    secret: bool,
}

fn scan_blocks(v: &[u8], w: Wants, out: &mut Vec<Hit>) {
    if w.card || w.ssn {
        scan_numbers(v, w.card, w.ssn, out);
    }
    if w.iban {
        scan_iban(v, out);
    }
    if w.secret {
        scan_tokens(v, out);
    }
}

/// Plain byte-loop reference for what the block scanners find.
fn reference_blocks(v: &[u8], w: Wants) -> Vec<Hit> {
    let mut out = Vec::new();
    let n = v.len();
    let stride = if w.ssn { 11 } else { 13 };
    if w.card || w.ssn {
        let mut i = 0;
        while i < n {
            let (s, e) = expand_run(v, i);
            let possible = is_digit(v[i]) || e > i + 1;
            if possible && s == i {
                if e - s >= stride {
                    analyze_run(v, s, e, w.card, w.ssn, &mut out);
                }
                i = e;
            } else {
                i += 1;
            }
        }
    }
    if w.iban {
        let mut r = 0;
        for s in 0..n.saturating_sub(3) {
            if s >= r
                && is(v[s], ALPHA)
                && is(v[s + 1], ALPHA)
                && is_digit(v[s + 2])
                && is_digit(v[s + 3])
                && (s == 0 || !is(v[s - 1], ALNUM))
                && let Some(e) = iban_at(v, s)
            {
                out.push(hit(s, e, Detector::Iban));
                r = e;
            }
        }
    }
    if w.secret {
        let mut i = 0;
        while i < n {
            if !is(v[i], TOKEN) {
                i += 1;
                continue;
            }
            let mut e = i;
            while e < n && is(v[e], TOKEN) {
                e += 1;
            }
            if e - i >= 32 && is_secret_token(&v[i..e]) {
                let mut pe = e;
                while pe < n && pe - e < 2 && v[pe] == b'=' {
                    pe += 1;
                }
                out.push(hit(i, pe, Detector::SecretKey));
            }
            i = e;
        }
    }
    out
}

proptest::proptest! {
    #[test]
    fn blocks_match_reference(
        v in proptest::collection::vec(proptest::prop_oneof![
            proptest::sample::select(b"0123456789".to_vec()),
            proptest::sample::select(b" -".to_vec()),
            proptest::sample::select(b"ABDEGNOWXYZabcdefqxyz+/_=.,@".to_vec()),
            proptest::prelude::any::<u8>(),
        ], 0..400),
        card in proptest::bool::ANY,
        ssn in proptest::bool::ANY,
        iban in proptest::bool::ANY,
        secret in proptest::bool::ANY,
    ) {
        let w = Wants { card, ssn, iban, secret };
        let mut got = Vec::new();
        scan_blocks(&v, w, &mut got);
        let mut want = reference_blocks(&v, w);
        let key = |h: &Hit| (h.start, h.end, h.source == Source::Detector(Detector::Iban));
        got.sort_by_key(key);
        want.sort_by_key(key);
        proptest::prop_assert_eq!(got, want);
    }
}

#[test]
fn blocks_find_planted_values() {
    // Card / SSN / IBAN / token planted at every offset around block boundaries.
    let tok = "ghp_4f8Kq2LmZ9xR7tYw1bNc3vDe5gHj6kP0sTuV";
    for pad in 0..140 {
        for (d, needle) in [
            (Detector::CreditCard, "4242 4242 4242 4242"),
            (Detector::UsSsn, "123-45-6789"),
            (Detector::Iban, "DE89 3704 0044 0532 0130 00"),
            (Detector::SecretKey, tok),
        ] {
            let s = format!(
                "{}{needle}{}",
                "x ".repeat(pad / 2) + &".".repeat(pad % 2),
                " z".repeat(pad % 5)
            );
            assert_eq!(found(d, &s), [needle], "{d:?} pad {pad}");
        }
    }
}

#[test]
fn strided_probe_finds_every_offset() {
    // A card/SSN at every offset and with every prefix length is found.
    for pad in 0..40 {
        let s = format!(
            "{}4242 4242 4242 4242{}",
            "x".repeat(pad),
            "y".repeat(pad % 7)
        );
        assert_eq!(
            found(Detector::CreditCard, &s),
            ["4242 4242 4242 4242"],
            "{s}"
        );
        let s = format!("{}123-45-6789{}", "x".repeat(pad), "y".repeat(pad % 5));
        assert_eq!(found(Detector::UsSsn, &s), ["123-45-6789"], "{s}");
        let t = "ghp_4f8Kq2LmZ9xR7tYw1bNc3vDe5gHj6kP0sTuV";
        let s = format!("{} {t} {}", "x ".repeat(pad), "y".repeat(pad % 5));
        assert_eq!(found(Detector::SecretKey, &s), [t], "{s}");
    }
}
