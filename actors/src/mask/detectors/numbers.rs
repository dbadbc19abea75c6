//! Credit cards and US SSNs: the block scan for runs of digits and single
//! separators, the walk of each run, the SSA validity rules and the Luhn check.

use super::blocks::{keep_from, masks_at, runs_at_least, wide};
use super::classes::is_digit;
use super::{Detector, Hit, hit};

/// Cards and SSNs: runs of ≥ 11/13 bytes of digits and single separators between
/// digits, holding enough digits, are analysed by `analyze_run`.
pub(super) fn scan_numbers(v: &[u8], card: bool, ssn: bool, out: &mut Vec<Hit>) {
    let n = v.len();
    let min_len: usize = if ssn { 11 } else { 13 };
    let min_digits: u32 = if ssn { 9 } else { 13 };
    if n < min_len {
        return;
    }
    let mut cur = masks_at::<true, true, false, false>(v, 0);
    let mut prev_digit = 0u128;
    let mut resume = 0usize;
    for k in 0..n.div_ceil(64) {
        let o = k * 64;
        let next = masks_at::<true, true, false, false>(v, k + 1);
        if cur.digit != 0 {
            let d = wide(cur.digit, next.digit);
            let poss = d | (wide(cur.sep, next.sep) & ((d << 1) | prev_digit) & (d >> 1));
            let runs = if ssn {
                runs_at_least::<11>(poss)
            } else {
                runs_at_least::<13>(poss)
            };
            let mut z = runs & keep_from(resume, o);
            while z != 0 {
                // The first candidate after `resume` starts a maximal run.
                let bit = z.trailing_zeros();
                let i = o + bit as usize;
                let len = (!(poss >> bit)).trailing_zeros();
                let (s, e, digits) = if bit + len >= 127 {
                    let (s, e) = expand_run(v, i);
                    (
                        s,
                        e,
                        v[s..e].iter().filter(|&&b| is_digit(b)).count() as u32,
                    )
                } else {
                    let run = ((1u128 << len) - 1) << bit;
                    (i, i + len as usize, (d & run).count_ones())
                };
                if digits >= min_digits {
                    analyze_run(v, s, e, card, ssn, out);
                }
                resume = e;
                z &= keep_from(resume, o);
            }
        }
        prev_digit = u128::from(cur.digit >> 63);
        cur = next;
    }
}

/// The maximal run around the possible byte `i`: digits, and single ' '/'-'
/// separators between two digits.
pub(super) fn expand_run(v: &[u8], i: usize) -> (usize, usize) {
    let n = v.len();
    let possible = |i: usize| {
        let b = v[i];
        is_digit(b)
            || ((b == b' ' || b == b'-')
                && i > 0
                && i + 1 < n
                && is_digit(v[i - 1])
                && is_digit(v[i + 1]))
    };
    let mut s = i;
    while s > 0 && possible(s - 1) {
        s -= 1;
    }
    let mut e = i + 1;
    while e < n && possible(e) {
        e += 1;
    }
    (s, e)
}

#[inline]
fn digits_end(v: &[u8], mut i: usize, e: usize) -> usize {
    while i < e && is_digit(v[i]) {
        i += 1;
    }
    i
}

/// `v[s..e]` is a maximal run: digit groups separated by single separators.
/// Each detector walks it on its own, exactly as it does when it is the
/// only one enabled: an SSN's last group may begin a card number
/// (`123-45-4781-9181-1111-1111`), and skipping past the SSN would leave
/// most of that card in clear.
pub(super) fn analyze_run(v: &[u8], s: usize, e: usize, card: bool, ssn: bool, out: &mut Vec<Hit>) {
    if ssn {
        walk_run(v, s, e, Detector::UsSsn, ssn_at, out);
    }
    if card {
        walk_run(v, s, e, Detector::CreditCard, card_at, out);
    }
}

/// Matches of one detector in the run, each group tried as a start once
/// the previous match has ended.
fn walk_run(
    v: &[u8],
    s: usize,
    e: usize,
    detector: Detector,
    at: fn(&[u8], usize, usize) -> Option<usize>,
    out: &mut Vec<Hit>,
) {
    let mut gs = s;
    while gs < e {
        if let Some(end) = at(v, gs, e) {
            out.push(hit(gs, end, detector));
            gs = end + 1;
            continue;
        }
        gs = digits_end(v, gs, e) + 1;
    }
}

/// `AAA-GG-SSSS` starting at group `gs`, with the SSA validity rules.
fn ssn_at(v: &[u8], gs: usize, e: usize) -> Option<usize> {
    let g1 = digits_end(v, gs, e);
    if g1 - gs != 3 || g1 >= e || v[g1] != b'-' {
        return None;
    }
    let g2 = digits_end(v, g1 + 1, e);
    if g2 - g1 - 1 != 2 || g2 >= e || v[g2] != b'-' {
        return None;
    }
    let g3 = digits_end(v, g2 + 1, e);
    if g3 - g2 - 1 != 4 {
        return None;
    }
    let area = &v[gs..g1];
    if area == b"000" || area == b"666" || area[0] == b'9' {
        return None;
    }
    if &v[g1 + 1..g2] == b"00" || &v[g2 + 1..g3] == b"0000" {
        return None;
    }
    Some(g3)
}

/// Longest window of whole groups starting at `gs` with 13–19 digits that passes
/// Luhn. Within a window every separator is the same byte, and every group has
/// ≥ 3 digits — except that a last group of 1–2 digits may follow groups of
/// exactly 4 (`4222 2222 2222 2`). This keeps phone numbers followed by dates
/// or amounts (`+49 30 1234 5678 2024-01-05`) from forming windows.
fn card_at(v: &[u8], gs: usize, e: usize) -> Option<usize> {
    let mut buf = [0u8; 19];
    let mut nd = 0usize;
    let mut prev_len = usize::MAX;
    let mut all_four = true;
    let mut sep = 0u8;
    let mut best = None;
    let mut g = gs;
    loop {
        let ge = digits_end(v, g, e);
        let len = ge - g;
        if nd + len > 19 || prev_len < 3 || (len < 3 && !all_four) {
            break;
        }
        for (k, &b) in v[g..ge].iter().enumerate() {
            buf[nd + k] = b - b'0';
        }
        nd += len;
        prev_len = len;
        all_four &= len == 4;
        if nd >= 13 && luhn(&buf[..nd]) {
            best = Some(ge);
        }
        if ge >= e {
            break;
        }
        if sep == 0 {
            sep = v[ge];
        } else if v[ge] != sep {
            break;
        }
        g = ge + 1;
    }
    best
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut x = u32::from(d);
        if i % 2 == 1 {
            x *= 2;
            if x > 9 {
                x -= 9;
            }
        }
        sum += x;
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::super::tests::found;
    use super::super::{Scanner, detect};
    use super::*;

    #[test]
    fn credit_card() {
        let d = Detector::CreditCard;
        assert_eq!(found(d, "4242424242424242"), ["4242424242424242"]);
        assert_eq!(
            found(d, "card 4242 4242 4242 4242 ok"),
            ["4242 4242 4242 4242"]
        );
        assert_eq!(found(d, "4242-4242-4242-4242"), ["4242-4242-4242-4242"]);
        assert_eq!(found(d, "amex 3782 822463 10005."), ["3782 822463 10005"]);
        assert_eq!(found(d, "visa13 4222222222222"), ["4222222222222"]);
        assert_eq!(found(d, "x4242424242424242y"), ["4242424242424242"]);
        // Neighbouring numbers in the same run do not hide the card.
        assert_eq!(
            found(d, "call 555-1234 4242 4242 4242 4242 2024 done"),
            ["4242 4242 4242 4242"]
        );
        assert_eq!(
            found(d, "a 4111111111111111 b 5555555555554444"),
            ["4111111111111111", "5555555555554444"]
        );
        // Near misses.
        assert!(found(d, "4242 4242 4242 4241").is_empty(), "Luhn-invalid");
        assert!(found(d, "4242424242424241").is_empty());
        assert!(
            found(d, "42424242424242424242").is_empty(),
            "20 glued digits"
        );
        assert!(
            found(d, "4242  4242  4242  4242").is_empty(),
            "double spaces"
        );
        assert!(found(d, "424242424242").is_empty(), "12 digits");
        assert!(found(d, "1 2 3 4 5 6 7 8 9 1 2 3 4 5 6").is_empty());
        assert!(found(d, "on 2024-01-02 at 10:30, order 12345").is_empty());
        assert_eq!(found(d, "visa 4222 2222 2222 2."), ["4222 2222 2222 2"]);
        assert!(
            found(d, "4242 4242-4242 4242").is_empty(),
            "mixed separators"
        );
        // Phone numbers followed by dates/amounts never form a window, whatever Luhn says.
        for tail in ["2024-01-05", "12 34", "1 2", "99"] {
            for a in 1000..1100 {
                let s = format!("+49 30 {a} 5678 {tail}");
                assert!(found(d, &s).is_empty(), "{s}");
            }
        }
    }

    /// Found by `fuzz/mask_rows`: with both detectors on, an SSN whose
    /// last group begins a card number hid only the SSN.
    #[test]
    fn a_card_sharing_a_group_with_an_ssn_is_found_with_both_on() {
        let v = b"GB123-45-4781-918111-1111-1111";
        let both = Scanner::new(&[Detector::UsSsn, Detector::CreditCard], Vec::new()).unwrap();
        let mut hits = Vec::new();
        both.scan(v, &mut hits);
        let mut got: Vec<Range<usize>> = hits.iter().map(|h| h.start..h.end).collect();
        got.sort_by_key(|r| (r.start, r.end));
        let mut alone = detect(Detector::UsSsn, v);
        alone.extend(detect(Detector::CreditCard, v));
        alone.sort_by_key(|r| (r.start, r.end));
        assert_eq!(got, alone);
        assert!(
            got.iter().any(|r| v[r.clone()].starts_with(b"4781-918111")),
            "{got:?}"
        );
    }

    #[test]
    fn ssn() {
        let d = Detector::UsSsn;
        assert_eq!(found(d, "ssn 123-45-6789."), ["123-45-6789"]);
        assert_eq!(found(d, "123-45-6789"), ["123-45-6789"]);
        assert_eq!(found(d, "ids 1 123-45-6789 x"), ["123-45-6789"]);
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "123 45 6789",
            "1123-45-6789",
            "123-45-67890",
        ] {
            assert!(found(d, bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn luhn_basics() {
        assert!(luhn(&[4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2]));
        assert!(!luhn(&[4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 1]));
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
    }
}
