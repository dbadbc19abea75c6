//! IBANs: the block scan for letter-letter-digit-digit starts, the compact and
//! grouped layouts, and the ISO 13616 mod-97 check.

use super::blocks::{keep_from, masks_at, wide};
use super::classes::{ALNUM, ALPHA, is, is_digit};
use super::{Detector, Hit, hit};

/// IBAN candidates: letter, letter, digit, digit, not preceded by an alphanumeric.
pub(super) fn scan_iban(v: &[u8], out: &mut Vec<Hit>) {
    let n = v.len();
    if n < 15 {
        return;
    }
    let mut cur = masks_at::<true, false, true, false>(v, 0);
    let mut prev_alnum = 0u128;
    let mut resume = 0usize;
    for k in 0..n.div_ceil(64) {
        let o = k * 64;
        let next = masks_at::<true, false, true, false>(v, k + 1);
        let (d, a) = (wide(cur.digit, next.digit), wide(cur.alpha, next.alpha));
        let before = ((a | d) << 1) | prev_alnum;
        let cand = (a & (a >> 1) & (d >> 2) & (d >> 3) & !before) as u64;
        let mut z = cand & keep_from(resume, o);
        while z != 0 {
            let s = o + z.trailing_zeros() as usize;
            resume = match iban_at(v, s) {
                Some(e) => {
                    out.push(hit(s, e, Detector::Iban));
                    e
                }
                None => s + 1,
            };
            z &= keep_from(resume, o);
        }
        prev_alnum = u128::from((cur.digit | cur.alpha) >> 63);
        cur = next;
    }
}

pub(super) fn iban_at(v: &[u8], s: usize) -> Option<usize> {
    let n = v.len();
    let p = s + 4;
    if p < n && is(v[p], ALNUM) {
        let mut e = p;
        while e < n && is(v[e], ALNUM) {
            e += 1;
            if e - p > 30 {
                return None;
            }
        }
        return (e - p >= 11 && mod97_is_one(v, s, e)).then_some(e);
    }
    // Groups of 4 separated by single spaces; the last group 1–4 chars. Try the
    // longest prefix of groups first (a following word may look like a group).
    let mut ends = [0usize; 8];
    let mut totals = [0usize; 8];
    let mut k = 0;
    let mut total = 0;
    let mut q = p;
    while k < 8 && q + 1 < n && v[q] == b' ' && is(v[q + 1], ALNUM) {
        let gs = q + 1;
        let mut ge = gs;
        while ge < n && is(v[ge], ALNUM) && ge - gs < 5 {
            ge += 1;
        }
        let len = ge - gs;
        if len > 4 || total + len > 30 {
            break;
        }
        total += len;
        ends[k] = ge;
        totals[k] = total;
        k += 1;
        if len < 4 {
            break;
        }
        q = ge;
    }
    (0..k)
        .rev()
        .find(|&j| totals[j] >= 11 && mod97_is_one(v, s, ends[j]))
        .map(|j| ends[j])
}

/// ISO 13616 check: move the first 4 chars to the end, letters → 10..35, mod 97 == 1.
fn mod97_is_one(v: &[u8], s: usize, e: usize) -> bool {
    let mut r: u32 = 0;
    let mut feed = |b: u8| {
        if is_digit(b) {
            r = (r * 10 + u32::from(b - b'0')) % 97;
        } else if is(b, ALPHA) {
            r = (r * 100 + u32::from(b.to_ascii_uppercase() - b'A') + 10) % 97;
        }
    };
    for &b in &v[s + 4..e] {
        feed(b);
    }
    for &b in &v[s..s + 4] {
        feed(b);
    }
    r == 1
}

#[cfg(test)]
mod tests {
    use super::super::tests::found;
    use super::*;

    #[test]
    fn iban() {
        let d = Detector::Iban;
        assert_eq!(
            found(d, "DE89370400440532013000"),
            ["DE89370400440532013000"]
        );
        assert_eq!(
            found(d, "pay to DE89 3704 0044 0532 0130 00 today"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            found(d, "GB82 WEST 1234 5698 7654 32"),
            ["GB82 WEST 1234 5698 7654 32"]
        );
        assert_eq!(
            found(d, "BE68 5390 0754 7034 and more"),
            ["BE68 5390 0754 7034"]
        );
        assert_eq!(found(d, "NO9386011117947"), ["NO9386011117947"]);
        assert_eq!(
            found(d, "(gb82west12345698765432)"),
            ["gb82west12345698765432"]
        );
        assert!(
            found(d, "DE89370400440532013001").is_empty(),
            "bad checksum"
        );
        assert!(
            found(d, "DE88 3704 0044 0532 0130 00").is_empty(),
            "bad checksum"
        );
        assert!(found(d, "XDE89370400440532013000").is_empty(), "glued");
        assert!(found(d, "DE8937040044").is_empty(), "too short");
    }
}
