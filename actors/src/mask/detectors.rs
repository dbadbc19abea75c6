//! Built-in detectors and custom regexes.
//!
//! Every scanner works on raw bytes (no UTF-8 decoding; non-ASCII bytes are
//! treated as opaque letters) and appends [`Hit`]s — byte ranges — to a caller
//! supplied vector, so a value without matches costs no allocation. Prechecks:
//!
//! - e-mail: `memchr` for `@`, then a byte walk around each `@`;
//! - credit card / SSN: 64-byte blocks are classified into digit and separator
//!   bit masks (SSE2); runs of ≥ 13 (11) bytes of digits and single separators
//!   are found with shifts/ANDs, and only runs with ≥ 13 (9) digits are walked;
//! - IBAN: the same masks give letter-letter-digit-digit starts directly;
//! - long secret tokens: a token-class mask, runs of ≥ 32;
//! - secret keywords: `memchr2` for `=`/`:`;
//! - AWS key, JWT, PEM: one literal search (SIMD multi-literal prefilter of the
//!   `regex` crate) for the enabled prefixes `AKIA`/`ASIA`, `eyJ`, `-----BEGIN `;
//! - custom regexes: one `RegexSet` pass before any `find_iter`.
//!
//! The block scanners are checked against plain byte-loop references in tests.

use std::ops::Range;

use memchr::{memchr, memchr2_iter, memmem, memrchr};
use regex::bytes::{Regex, RegexSet};

/// A built-in detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Detector {
    Email = 0,
    CreditCard = 1,
    UsSsn = 2,
    Iban = 3,
    AwsAccessKey = 4,
    SecretKey = 5,
    Jwt = 6,
    PemPrivateKey = 7,
}

impl Detector {
    pub const ALL: [Detector; 8] = [
        Detector::Email,
        Detector::CreditCard,
        Detector::UsSsn,
        Detector::Iban,
        Detector::AwsAccessKey,
        Detector::SecretKey,
        Detector::Jwt,
        Detector::PemPrivateKey,
    ];

    /// The configuration name (one of [`super::DETECTORS`]).
    pub fn name(self) -> &'static str {
        super::DETECTORS[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Detector> {
        let i = super::DETECTORS.iter().position(|d| *d == name)?;
        Some(Detector::ALL[i])
    }
}

/// Run one built-in detector on `value` and return the matched byte ranges
/// (sorted, possibly overlapping). For diagnostics and tests.
pub fn detect(detector: Detector, value: &[u8]) -> Vec<Range<usize>> {
    let s = Scanner::new(&[detector], Vec::new()).expect("no regexes");
    let mut hits = Vec::new();
    s.scan(value, &mut hits);
    hits.sort_by_key(|h| (h.start, h.end));
    hits.into_iter().map(|h| h.start..h.end).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Detector(Detector),
    /// Global index of a custom regex.
    Regex(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub source: Source,
}

#[inline]
fn hit(start: usize, end: usize, d: Detector) -> Hit {
    Hit {
        start,
        end,
        source: Source::Detector(d),
    }
}

// ---------------------------------------------------------------------------
// Byte classes

const DIGIT: u8 = 1;
const UPPER: u8 = 2;
const LOWER: u8 = 4;
/// E-mail local part: alnum, `._%+-`, non-ASCII.
const LOCAL: u8 = 8;
/// E-mail domain label: alnum, `-`, non-ASCII.
const DOMAIN: u8 = 16;
/// Secret token: alnum, `+/_-`.
const TOKEN: u8 = 32;
const HEX: u8 = 64;
const HIGH: u8 = 128;
const ALPHA: u8 = UPPER | LOWER;
const ALNUM: u8 = DIGIT | ALPHA;

static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0usize;
    while i < 256 {
        let b = i as u8;
        let mut c = 0u8;
        if b.is_ascii_digit() {
            c |= DIGIT | LOCAL | DOMAIN | TOKEN | HEX;
        }
        if b.is_ascii_uppercase() {
            c |= UPPER | LOCAL | DOMAIN | TOKEN;
            if b <= b'F' {
                c |= HEX;
            }
        }
        if b.is_ascii_lowercase() {
            c |= LOWER | LOCAL | DOMAIN | TOKEN;
            if b <= b'f' {
                c |= HEX;
            }
        }
        if b >= 0x80 {
            c |= HIGH | LOCAL | DOMAIN;
        }
        match b {
            b'.' | b'_' | b'%' | b'+' => c |= LOCAL,
            b'-' => c |= LOCAL | DOMAIN,
            _ => {}
        }
        if matches!(b, b'+' | b'/' | b'_' | b'-') {
            c |= TOKEN;
        }
        t[i] = c;
        i += 1;
    }
    t
}

#[inline(always)]
fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

#[inline(always)]
fn is_digit(b: u8) -> bool {
    b.wrapping_sub(b'0') < 10
}

// ---------------------------------------------------------------------------
// Block classification: 64-byte blocks → one bit per byte and class. The
// number, IBAN and long-token detectors find their candidates with bit
// operations on these masks instead of byte loops (SSE2 on x86_64, where it is
// part of the baseline; a portable loop elsewhere).

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Masks {
    digit: u64,
    /// ' ' or '-'.
    sep: u64,
    alpha: u64,
    /// `[A-Za-z0-9+/_-]`.
    token: u64,
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
fn masks_at<const DIGIT: bool, const SEP: bool, const ALPHA: bool, const TOKEN: bool>(
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
fn runs_at_least<const K: u32>(w: u128) -> u64 {
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
fn keep_from(pos: usize, o: usize) -> u64 {
    match pos.saturating_sub(o) {
        0 => !0,
        d if d >= 64 => 0,
        d => !0u64 << d,
    }
}

#[inline]
fn wide(a: u64, b: u64) -> u128 {
    u128::from(a) | (u128::from(b) << 64)
}

/// Cards and SSNs: runs of ≥ 11/13 bytes of digits and single separators between
/// digits, holding enough digits, are analysed by `analyze_run`.
fn scan_numbers(v: &[u8], card: bool, ssn: bool, out: &mut Vec<Hit>) {
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

/// IBAN candidates: letter, letter, digit, digit, not preceded by an alphanumeric.
fn scan_iban(v: &[u8], out: &mut Vec<Hit>) {
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

/// Long tokens (≥ 32 bytes of `[A-Za-z0-9+/_-]`), judged by `is_secret_token`.
fn scan_tokens(v: &[u8], out: &mut Vec<Hit>) {
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

// ---------------------------------------------------------------------------
// Scanner

/// The compiled set of enabled detectors plus custom regexes.
pub(crate) struct Scanner {
    email: bool,
    card: bool,
    ssn: bool,
    iban: bool,
    aws: bool,
    secret: bool,
    jwt: bool,
    pem: bool,
    pem_end: memmem::Finder<'static>,
    /// One pass for the enabled literal prefixes (AKIA/ASIA, eyJ, -----BEGIN ).
    literals: Option<Regex>,
    regexes: Vec<Regex>,
    set: Option<RegexSet>,
}

impl Scanner {
    pub(crate) fn new(dets: &[Detector], regexes: Vec<Regex>) -> Result<Scanner, regex::Error> {
        let has = |d| dets.contains(&d);
        let mut lits: Vec<&str> = Vec::new();
        if has(Detector::AwsAccessKey) {
            lits.extend(["AKIA", "ASIA"]);
        }
        if has(Detector::Jwt) {
            lits.push("eyJ");
        }
        if has(Detector::PemPrivateKey) {
            lits.push("-----BEGIN ");
        }
        let literals = if lits.is_empty() {
            None
        } else {
            Some(Regex::new(&lits.join("|"))?)
        };
        let set = if regexes.len() > 1 {
            Some(RegexSet::new(regexes.iter().map(|r| r.as_str()))?)
        } else {
            None
        };
        Ok(Scanner {
            email: has(Detector::Email),
            card: has(Detector::CreditCard),
            ssn: has(Detector::UsSsn),
            iban: has(Detector::Iban),
            aws: has(Detector::AwsAccessKey),
            secret: has(Detector::SecretKey),
            jwt: has(Detector::Jwt),
            pem: has(Detector::PemPrivateKey),
            pem_end: memmem::Finder::new(b"-----END ").into_owned(),
            literals,
            regexes,
            set,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        !(self.email
            || self.card
            || self.ssn
            || self.iban
            || self.aws
            || self.secret
            || self.jwt
            || self.pem)
            && self.regexes.is_empty()
    }

    /// Append every match in `v` to `out` (unsorted, possibly overlapping).
    #[inline]
    pub(crate) fn scan(&self, v: &[u8], out: &mut Vec<Hit>) {
        if self.email {
            scan_email(v, out);
        }
        if self.card || self.ssn {
            scan_numbers(v, self.card, self.ssn, out);
        }
        if self.iban {
            scan_iban(v, out);
        }
        if self.secret {
            scan_tokens(v, out);
        }
        if let Some(lits) = &self.literals {
            self.scan_literals(lits, v, out);
        }
        if self.secret {
            scan_secret_keywords(v, out);
        }
        if !self.regexes.is_empty() {
            self.scan_regexes(v, out);
        }
    }

    fn scan_regexes(&self, v: &[u8], out: &mut Vec<Hit>) {
        let mut one = |i: usize| {
            for m in self.regexes[i].find_iter(v) {
                if !m.is_empty() {
                    out.push(Hit {
                        start: m.start(),
                        end: m.end(),
                        source: Source::Regex(i as u32),
                    });
                }
            }
        };
        match &self.set {
            None => one(0),
            Some(set) => {
                if set.is_match(v) {
                    for i in set.matches(v).iter() {
                        one(i);
                    }
                }
            }
        }
    }

    /// AWS keys, JWTs and PEM private keys, from one search for their prefixes.
    /// Each occurrence is examined (the search restarts one byte after it, so
    /// overlapping prefixes are not missed).
    fn scan_literals(&self, lits: &Regex, v: &[u8], out: &mut Vec<Hit>) {
        let (mut jwt_floor, mut pem_floor) = (0, 0);
        let mut pos = 0;
        while let Some(m) = lits.find_at(v, pos) {
            let i = m.start();
            pos = i + 1;
            match v[i] {
                b'A' => aws_at(v, i, out),
                b'e' if i >= jwt_floor => jwt_floor = jwt_at(v, i, out),
                b'-' if i >= pem_floor => pem_floor = self.pem_at(v, i, out),
                _ => {}
            }
        }
    }

    /// PEM private key at `i` (a `-----BEGIN `). Returns the position before which
    /// later `-----BEGIN ` occurrences need not be examined.
    fn pem_at(&self, v: &[u8], i: usize, out: &mut Vec<Hit>) -> usize {
        // After a marker ("-----BEGIN " / "-----END "): `[A-Z0-9 ]*PRIVATE KEY-----`.
        fn label_end(v: &[u8], from: usize) -> Option<usize> {
            let lim = (from + 64).min(v.len());
            let mut k = from;
            while k < lim && (is(v[k], UPPER | DIGIT) || v[k] == b' ') {
                k += 1;
            }
            (v[from..k].ends_with(b"PRIVATE KEY") && v[k..].starts_with(b"-----")).then_some(k + 5)
        }
        let Some(hdr_end) = label_end(v, i + 11) else {
            return i + 1;
        };
        let mut end = v.len();
        let mut from = hdr_end;
        while let Some(o) = self.pem_end.find(&v[from..]) {
            if let Some(e) = label_end(v, from + o + 9) {
                end = e;
                break;
            }
            from += o + 9;
        }
        out.push(hit(i, end, Detector::PemPrivateKey));
        end
    }
}

/// `AKIA`/`ASIA` at `i` followed by 16 `[A-Z0-9]`.
fn aws_at(v: &[u8], i: usize, out: &mut Vec<Hit>) {
    if let Some(rest) = v.get(i + 4..i + 20)
        && rest.iter().all(|&b| is(b, UPPER | DIGIT))
    {
        out.push(hit(i, i + 20, Detector::AwsAccessKey));
    }
}

/// JWT at `i` (an `eyJ`). Returns the position before which later `eyJ`s need not
/// be examined: on failure they fail the same way, which keeps "eyJeyJ..." linear.
fn jwt_at(v: &[u8], i: usize, out: &mut Vec<Hit>) -> usize {
    let b64url_end = |mut k: usize| {
        while k < v.len() && (is(v[k], ALNUM) || v[k] == b'-' || v[k] == b'_') {
            k += 1;
        }
        k
    };
    let e1 = b64url_end(i);
    if e1 - i < 10 || v.get(e1) != Some(&b'.') {
        return e1;
    }
    let e2 = b64url_end(e1 + 1);
    if e2 == e1 + 1 || v.get(e2) != Some(&b'.') {
        return e2;
    }
    let e3 = b64url_end(e2 + 1);
    out.push(hit(i, e3, Detector::Jwt));
    e3
}

// ---------------------------------------------------------------------------
// E-mail

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

// ---------------------------------------------------------------------------
// Credit cards and SSNs

/// The maximal run around the possible byte `i`: digits, and single ' '/'-'
/// separators between two digits.
fn expand_run(v: &[u8], i: usize) -> (usize, usize) {
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
fn analyze_run(v: &[u8], s: usize, e: usize, card: bool, ssn: bool, out: &mut Vec<Hit>) {
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

// ---------------------------------------------------------------------------
// IBAN

fn iban_at(v: &[u8], s: usize) -> Option<usize> {
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

// ---------------------------------------------------------------------------
// Secrets

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
    use super::*;

    fn found(d: Detector, s: &str) -> Vec<&str> {
        detect(d, s.as_bytes()).into_iter().map(|r| &s[r]).collect()
    }

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

    #[test]
    fn aws_jwt_pem() {
        assert_eq!(
            found(Detector::AwsAccessKey, "key=AKIAIOSFODNN7EXAMPLE;"),
            ["AKIAIOSFODNN7EXAMPLE"]
        );
        assert_eq!(
            found(Detector::AwsAccessKey, "ASIAY34FZKBOKMUTVV7A"),
            ["ASIAY34FZKBOKMUTVV7A"]
        );
        assert!(found(Detector::AwsAccessKey, "AKIAiosfodnn7example").is_empty());
        // Overlapping prefixes are all examined.
        assert_eq!(
            found(Detector::AwsAccessKey, "xASIAKIAIOSFODNN7EXAMPLE"),
            ["ASIAKIAIOSFODNN7EXAM", "AKIAIOSFODNN7EXAMPLE"]
        );
        assert!(found(Detector::AwsAccessKey, "AKIA1234").is_empty());

        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(found(Detector::Jwt, &format!("Bearer {jwt} x")), [jwt]);
        assert_eq!(
            found(Detector::Jwt, "eyJhbGciOiJub25lIn0.eyJ4IjoxfQ."),
            ["eyJhbGciOiJub25lIn0.eyJ4IjoxfQ."]
        );
        assert!(found(Detector::Jwt, "eyJhbGciOiJub25lIn0 only").is_empty());
        assert!(found(Detector::Jwt, "eyJ.a.b").is_empty());

        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            found(Detector::PemPrivateKey, &format!("k: {pem}\nbye")),
            [pem]
        );
        let cut = "x -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg";
        assert_eq!(found(Detector::PemPrivateKey, cut), [&cut[2..]]);
        assert!(
            found(
                Detector::PemPrivateKey,
                "-----BEGIN CERTIFICATE-----\nMII\n"
            )
            .is_empty()
        );
        assert!(found(Detector::PemPrivateKey, "-----BEGIN PUBLIC KEY-----").is_empty());
    }

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

    #[test]
    fn luhn_basics() {
        assert!(luhn(&[4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2]));
        assert!(!luhn(&[4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 1]));
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
    }
}
