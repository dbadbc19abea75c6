//! AWS access keys, JWTs and PEM private keys: one search for their literal
//! prefixes (`AKIA`/`ASIA`, `eyJ`, `-----BEGIN `), then a check at each occurrence.

use regex::bytes::Regex;

use super::classes::{ALNUM, DIGIT, UPPER, is};
use super::scanner::Scanner;
use super::{Detector, Hit, hit};

impl Scanner {
    /// AWS keys, JWTs and PEM private keys, from one search for their prefixes.
    /// Each occurrence is examined (the search restarts one byte after it, so
    /// overlapping prefixes are not missed).
    pub(super) fn scan_literals(&self, lits: &Regex, v: &[u8], out: &mut Vec<Hit>) {
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

#[cfg(test)]
mod tests {
    use super::super::tests::found;
    use super::*;

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
}
