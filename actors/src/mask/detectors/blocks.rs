//! Block classification: 64-byte blocks → one bit per byte and class. The
//! number, IBAN and long-token detectors find their candidates with bit
//! operations on these masks instead of byte loops (SSE2 on x86_64, where it is
//! part of the baseline; a portable loop elsewhere).

use super::classes::{ALPHA, TOKEN, is, is_digit};

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Masks {
    pub(super) digit: u64,
    /// ' ' or '-'.
    pub(super) sep: u64,
    pub(super) alpha: u64,
    /// `[A-Za-z0-9+/_-]`.
    pub(super) token: u64,
}

/// Classify one block; only the classes whose const flag is set are computed.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify<const DIGIT: bool, const SEP: bool, const ALPHA: bool, const TOKEN: bool>(
    c: &[u8; 64],
) -> Masks {
    use std::arch::x86_64::*;
    let mut m = Masks::default();
    for (lane, chunk) in c.chunks_exact(16).enumerate() {
        let sh = lane * 16;
        // SAFETY: SSE2 is part of the x86_64 baseline (every x86_64 CPU has it), and
        // `chunk` is 16 readable bytes (`loadu` has no alignment requirement).
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let dash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'-' as i8));
            let t = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
            let dig = _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(9)), t);
            if DIGIT {
                m.digit |= u64::from(_mm_movemask_epi8(dig) as u16) << sh;
            }
            if SEP {
                let sp = _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8));
                m.sep |= u64::from(_mm_movemask_epi8(_mm_or_si128(sp, dash)) as u16) << sh;
            }
            if ALPHA || TOKEN {
                let l = _mm_sub_epi8(
                    _mm_or_si128(v, _mm_set1_epi8(0x20)),
                    _mm_set1_epi8(b'a' as i8),
                );
                let alp = _mm_cmpeq_epi8(_mm_min_epu8(l, _mm_set1_epi8(25)), l);
                if ALPHA {
                    m.alpha |= u64::from(_mm_movemask_epi8(alp) as u16) << sh;
                }
                if TOKEN {
                    let plus = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'+' as i8));
                    let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'/' as i8));
                    let under = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'_' as i8));
                    let tok = _mm_or_si128(
                        _mm_or_si128(_mm_or_si128(dig, alp), _mm_or_si128(dash, plus)),
                        _mm_or_si128(slash, under),
                    );
                    m.token |= u64::from(_mm_movemask_epi8(tok) as u16) << sh;
                }
            }
        }
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn classify<const DIGIT: bool, const SEP: bool, const ALPHA: bool, const TOKEN: bool>(
    c: &[u8; 64],
) -> Masks {
    classify_scalar(c)
}

/// Portable classification (all classes); the reference for the SIMD version.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_scalar(c: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in c.iter().enumerate() {
        let bit = 1u64 << i;
        if is_digit(b) {
            m.digit |= bit;
        }
        if b == b' ' || b == b'-' {
            m.sep |= bit;
        }
        if is(b, ALPHA) {
            m.alpha |= bit;
        }
        if is(b, TOKEN) {
            m.token |= bit;
        }
    }
    m
}

/// Masks of block `k` of `v` (zero-padded at the end, all-zero past it).
#[inline(always)]
pub(super) fn masks_at<const DIGIT: bool, const SEP: bool, const ALPHA: bool, const TOKEN: bool>(
    v: &[u8],
    k: usize,
) -> Masks {
    let o = k * 64;
    if let Some(block) = v.get(o..o + 64) {
        classify::<DIGIT, SEP, ALPHA, TOKEN>(block.try_into().unwrap_or(&[0; 64]))
    } else if o < v.len() {
        let mut buf = [0u8; 64];
        buf[..v.len() - o].copy_from_slice(&v[o..]);
        classify::<DIGIT, SEP, ALPHA, TOKEN>(&buf)
    } else {
        Masks::default()
    }
}

/// Bit i set iff bits i..i+K of `w` are all set (1 ≤ K ≤ 64).
#[inline(always)]
pub(super) fn runs_at_least<const K: u32>(w: u128) -> u64 {
    let mut y = w;
    let mut have = 1u32;
    while have * 2 <= K {
        y &= y >> have;
        have *= 2;
    }
    if have < K {
        y &= y >> (K - have);
    }
    y as u64
}

/// Bits of the block at offset `o` for positions ≥ `pos`.
#[inline]
pub(super) fn keep_from(pos: usize, o: usize) -> u64 {
    match pos.saturating_sub(o) {
        0 => !0,
        d if d >= 64 => 0,
        d => !0u64 << d,
    }
}

#[inline]
pub(super) fn wide(a: u64, b: u64) -> u128 {
    u128::from(a) | (u128::from(b) << 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_masks_match_scalar() {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        for round in 0..20_000 {
            let mut c = [0u8; 64];
            for b in c.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Bias towards the interesting ASCII range half of the time.
                *b = if round % 2 == 0 {
                    (x % 96 + 32) as u8
                } else {
                    x as u8
                };
            }
            assert_eq!(masks_for_test(&c), classify_scalar(&c));
        }
        let every: [u8; 64] = std::array::from_fn(|i| i as u8);
        for base in [0u8, 64, 128, 192] {
            let c: [u8; 64] = every.map(|b| b + base);
            assert_eq!(masks_for_test(&c), classify_scalar(&c));
        }
    }

    fn masks_for_test(c: &[u8; 64]) -> Masks {
        classify::<true, true, true, true>(c)
    }

    #[test]
    fn runs_at_least_matches_naive() {
        let mut x: u128 = 0x9e3779b97f4a7c15f39cc0605cedc834;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Make long runs likely.
            let w = x | (x >> 1) | (x >> 3);
            let all: [(u32, u64); 8] = [
                (1, runs_at_least::<1>(w)),
                (2, runs_at_least::<2>(w)),
                (3, runs_at_least::<3>(w)),
                (11, runs_at_least::<11>(w)),
                (13, runs_at_least::<13>(w)),
                (15, runs_at_least::<15>(w)),
                (32, runs_at_least::<32>(w)),
                (64, runs_at_least::<64>(w)),
            ];
            for (k, got) in all {
                for i in 0..64 {
                    let naive = (i..i + k as usize).all(|j| j < 128 && (w >> j) & 1 == 1);
                    assert_eq!((got >> i) & 1 == 1, naive, "k={k} i={i}");
                }
            }
        }
    }
}
