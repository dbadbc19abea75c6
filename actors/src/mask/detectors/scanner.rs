//! The compiled `Scanner`: which detectors are enabled, the custom regexes, and
//! the order in which one value is scanned.

use memchr::memmem;
use regex::bytes::{Regex, RegexSet};

use super::email::scan_email;
use super::iban::scan_iban;
use super::numbers::scan_numbers;
use super::secrets::{scan_secret_keywords, scan_tokens};
use super::{Detector, Hit, Source};

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
    pub(super) pem_end: memmem::Finder<'static>,
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
}
