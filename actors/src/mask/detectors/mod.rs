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
//!
//! # Layout
//!
//! - `mod.rs` — [`Detector`] and its names, [`detect`], and the `Hit` / `Source`
//!   records every scanner appends.
//! - `scanner.rs` — `Scanner`: the compiled set of enabled detectors and custom
//!   regexes, and the order in which a value is scanned.
//! - `classes.rs` — the byte-class table and its class bits.
//! - `blocks.rs` — 64-byte block classification into bit masks (SSE2 or a
//!   portable loop) and the bit-run helpers used on them.
//! - `email.rs` — e-mail addresses.
//! - `numbers.rs` — credit cards and US SSNs: the digit-run block scan, the walk
//!   of each run, the SSA rules, Luhn.
//! - `iban.rs` — IBANs: the block scan for their starts and the mod-97 check.
//! - `literals.rs` — AWS access keys, JWTs and PEM private keys, from one search
//!   for their literal prefixes.
//! - `secrets.rs` — secret keywords (`password=...`) and long random-looking tokens.
//! - `tests.rs` — shared test helpers, and the block scanners checked against
//!   plain byte-loop references.

mod blocks;
mod classes;
mod email;
mod iban;
mod literals;
mod numbers;
mod scanner;
mod secrets;
#[cfg(test)]
mod tests;

use std::ops::Range;

pub(crate) use scanner::Scanner;

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
