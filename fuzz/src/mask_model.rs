//! The masking oracle shared by `mask_rows` and `mask_copy`: generated
//! values with known secrets planted in them, a set of maskers covering
//! every strategy, and a reference model of what a masked value must be,
//! built from the documented rules and the public single-detector
//! [`detect`] rather than from the masker's own combined scan.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use arbitrary::{Result, Unstructured};
use aws_lc_rs::hmac;
use gatehouse_actors::mask::{
    ColumnAction, ColumnInfo, Detector, MaskRule, Masker, RowPlan, Strategy, detect,
};

/// Values every detector must find when they stand apart (between ` ; `),
/// with the part that must never survive masking.
pub const SECRETS: &[(&str, &str)] = &[
    ("alice.smith@example.com", "alice.smith@example.com"),
    ("4242 4242 4242 4242", "4242 4242 4242 4242"),
    ("4111-1111-1111-1111", "4111-1111-1111-1111"),
    ("378282246310005", "378282246310005"),
    ("123-45-6789", "123-45-6789"),
    ("GB82WEST12345698765432", "GB82WEST12345698765432"),
    ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl",
    ),
    ("password=hunter2hunter2", "hunter2hunter2"),
    (
        "\"api_key\": \"k3y-V4lue-0f-4n-4p1\"",
        "k3y-V4lue-0f-4n-4p1",
    ),
    (
        "Authorization: Bearer abcDEF123ghiJKL456",
        "abcDEF123ghiJKL456",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END RSA PRIVATE KEY-----",
        "MIIBOgIBAAJBAKj34GkxFhD9",
    ),
    (
        "Zk9yX3Rlc3Rpbmc6IHE4WnIzTG1OMHBYN3ZC",
        "Zk9yX3Rlc3Rpbmc6IHE4WnIzTG1OMHBYN3ZC",
    ),
    ("ACME-123456", "ACME-123456"),
];

/// Text around and between secrets: separators, near misses, escapes and
/// the characters COPY formats treat specially.
const FILLER: &[&str] = &[
    " ; ",
    "x",
    "@",
    "4242",
    "-",
    " ",
    "\t",
    "\n",
    "\r",
    "\\",
    ",",
    "\"",
    "'",
    "|",
    "é",
    "NULL",
    "\\N",
    "eyJ",
    "AKIA",
    "-----BEGIN ",
    "secret=",
    ":",
    "=",
    "ACME-",
    "12",
    ".com",
    "\0",
];

pub const STRATEGIES: [Strategy; 4] = [
    Strategy::Redact,
    Strategy::Partial { keep: 4 },
    Strategy::Hash,
    Strategy::Null,
];

pub const HASH_KEY: [u8; 32] = [5; 32];

/// A masker per (column rule strategy, detector rule strategy): one rule
/// masking the columns `secret` and `customers.email`, one running every
/// detector and a custom regex.
pub static MASKERS: LazyLock<Vec<Masker>> = LazyLock::new(|| {
    let mut all = Vec::new();
    for columns in &STRATEGIES {
        for detectors in &STRATEGIES {
            all.push(
                Masker::new(
                    vec![
                        MaskRule {
                            name: "cols".into(),
                            columns: vec!["secret".into(), "customers.email".into()],
                            detectors: vec![],
                            regex: vec![],
                            strategy: columns.clone(),
                        },
                        MaskRule {
                            name: "dets".into(),
                            columns: vec![],
                            detectors: gatehouse_actors::mask::DETECTORS
                                .iter()
                                .map(|d| d.to_string())
                                .collect(),
                            regex: vec![REGEX.into()],
                            strategy: detectors.clone(),
                        },
                    ],
                    HASH_KEY,
                )
                .expect("valid mask rules"),
            );
        }
    }
    all
});

pub const REGEX: &str = "ACME-[0-9]{6}";
static REGEX_RE: LazyLock<regex::bytes::Regex> =
    LazyLock::new(|| regex::bytes::Regex::new(REGEX).expect("a valid regex"));

/// One generated masking setup.
pub struct Setup {
    pub masker: &'static Masker,
    pub column_strategy: Strategy,
    pub detector_strategy: Strategy,
    pub columns: Vec<ColumnInfo>,
    pub plan: RowPlan,
}

pub fn setup(u: &mut Unstructured, binary_allowed: bool) -> Result<Setup> {
    let c = u.int_in_range(0..=3usize)?;
    let d = u.int_in_range(0..=3usize)?;
    let masker = &MASKERS[c * 4 + d];
    let n = u.int_in_range(0..=6)?;
    let mut columns = Vec::new();
    for _ in 0..n {
        let name = *u.choose(&["secret", "email", "notes", "id", "e"])?;
        let source = match u.int_in_range(0..=2)? {
            0 => None,
            1 => Some(("public.customers".to_owned(), name.to_owned())),
            _ => Some(("public.orders".to_owned(), name.to_owned())),
        };
        columns.push(ColumnInfo {
            name: name.into(),
            source,
            binary: binary_allowed && u.ratio(1, 4)?,
            type_oid: *u.choose(&[0, 25, 1043, 23, 17, 3802, 114])?,
        });
    }
    let mut mentioned = BTreeSet::new();
    for m in ["email", "secret", "?", "*", "id"] {
        if u.ratio(1, 4)? {
            mentioned.insert(m.to_owned());
        }
    }
    let plan = masker.plan(&columns, &mentioned);
    Ok(Setup {
        masker,
        column_strategy: STRATEGIES[c].clone(),
        detector_strategy: STRATEGIES[d].clone(),
        columns,
        plan,
    })
}

/// A value: filler with secrets planted, or arbitrary bytes. Returns the
/// value and the secrets planted apart (which must not survive).
pub fn value(u: &mut Unstructured) -> Result<(Vec<u8>, Vec<&'static str>)> {
    let mut v = Vec::new();
    let mut planted = Vec::new();
    if u.ratio(1, 8)? {
        let n = u.int_in_range(0..=64)?;
        return Ok((u.bytes(n)?.to_vec(), planted));
    }
    for _ in 0..u.int_in_range(0..=6)? {
        if u.ratio(1, 3)? {
            let (text, must_go) = *u.choose(SECRETS)?;
            v.extend_from_slice(b" ; ");
            v.extend_from_slice(text.as_bytes());
            v.extend_from_slice(b" ; ");
            planted.push(must_go);
        } else {
            v.extend_from_slice(u.choose(FILLER)?.as_bytes());
        }
    }
    Ok((v, planted))
}

/// What happens to a non-NULL value of column `i`, by the reference model.
#[derive(Debug, PartialEq, Eq)]
pub enum Expected {
    Same,
    Null,
    Bytes(Vec<u8>),
}

/// The type classes of the masking docs.
fn typed(oid: u32) -> bool {
    matches!(
        oid,
        16 | 20
            | 21
            | 23
            | 26
            | 700
            | 701
            | 1700
            | 790
            | 1082
            | 1083
            | 1266
            | 1114
            | 1184
            | 1186
            | 2950
            | 869
            | 650
            | 829
            | 774
            | 1560
            | 1562
    )
}

fn text_like(oid: u32) -> Option<usize> {
    match oid {
        25 | 1043 | 1042 | 19 | 114 | 142 | 705 => Some(0),
        3802 => Some(1),
        _ => None,
    }
}

/// Whether values of column `i` are masked or scanned: then no planted
/// secret may survive, whatever the model predicts.
pub fn hides(s: &Setup, i: usize, binary: bool) -> bool {
    let oid = s.columns.get(i).map_or(0, |c| c.type_oid);
    match s.plan.action(i) {
        ColumnAction::Pass => false,
        ColumnAction::Mask { .. } => true,
        ColumnAction::Detect => text_like(oid).is_some() || (oid != 17 && !binary),
    }
}

/// The expected masked form of value `v` in column `i` read in `binary`.
pub fn expected(s: &Setup, i: usize, binary: bool, v: &[u8]) -> Expected {
    let oid = s.columns.get(i).map_or(0, |c| c.type_oid);
    match s.plan.action(i) {
        ColumnAction::Pass => Expected::Same,
        ColumnAction::Mask { .. } => {
            if binary || s.column_strategy == Strategy::Null || typed(oid) || oid == 17 {
                Expected::Null
            } else {
                let mut out = Vec::new();
                render(&s.column_strategy, v, &mut out);
                Expected::Bytes(out)
            }
        }
        ColumnAction::Detect => {
            if !hides(s, i, binary) {
                return Expected::Same;
            }
            let skip = if binary {
                text_like(oid).unwrap_or(0)
            } else {
                0
            };
            let scanned_part = v.get(skip..).unwrap_or(v);
            let spans = merged_hits(scanned_part);
            if spans.is_empty() {
                return Expected::Same;
            }
            if binary || s.detector_strategy == Strategy::Null || typed(oid) {
                return Expected::Null;
            }
            let mut out = Vec::new();
            let mut last = 0;
            for (a, b) in spans {
                out.extend_from_slice(&v[last..a]);
                render(&s.detector_strategy, &v[a..b], &mut out);
                last = b;
            }
            out.extend_from_slice(&v[last..]);
            Expected::Bytes(out)
        }
    }
}

/// Every detector's and the regex's matches, sorted and merged where they
/// overlap (as the masking docs define).
pub fn merged_hits(v: &[u8]) -> Vec<(usize, usize)> {
    let mut hits: Vec<(usize, usize)> = Detector::ALL
        .iter()
        .flat_map(|d| detect(*d, v))
        .map(|r| (r.start, r.end))
        .chain(
            REGEX_RE
                .find_iter(v)
                .filter(|m| !m.is_empty())
                .map(|m| (m.start(), m.end())),
        )
        .collect();
    hits.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in hits {
        match merged.last_mut() {
            Some(last) if a < last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// The documented replacement of a matched value.
pub fn render(strategy: &Strategy, m: &[u8], out: &mut Vec<u8>) {
    match strategy {
        Strategy::Redact | Strategy::Null => out.extend_from_slice(b"[redacted]"),
        Strategy::Hash => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &HASH_KEY);
            let tag = hmac::sign(&key, m);
            out.extend_from_slice(b"hash:");
            for b in &tag.as_ref()[..8] {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
        Strategy::Partial { keep } => {
            // Characters by UTF-8 lead byte; spaces and dashes kept and
            // not counted; at most half of the rest revealed, at the end.
            let mut chars = Vec::new();
            let mut i = 0;
            while i < m.len() {
                let n = match m[i] {
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf7 => 4,
                    _ => 1,
                }
                .min(m.len() - i);
                chars.push(&m[i..i + n]);
                i += n;
            }
            let counted = chars
                .iter()
                .filter(|c| !matches!(c, [b' '] | [b'-']))
                .count();
            let shown = (*keep).min(counted / 2);
            let mut seen = 0;
            for c in chars {
                if matches!(c, [b' '] | [b'-']) {
                    out.extend_from_slice(c);
                    continue;
                }
                if seen < counted - shown {
                    out.push(b'*');
                } else {
                    out.extend_from_slice(c);
                }
                seen += 1;
            }
        }
    }
}

/// Check one output value against the model and the planted secrets.
pub fn check_value(
    s: &Setup,
    i: usize,
    binary: bool,
    input: Option<&[u8]>,
    output: Option<&[u8]>,
    planted: &[&str],
) {
    let Some(v) = input else {
        assert_eq!(output, None, "column {i}: a NULL was filled");
        return;
    };
    let want = expected(s, i, binary, v);
    match (&want, output) {
        (Expected::Same, Some(o)) => assert_eq!(o, v, "column {i}: changed"),
        (Expected::Null, None) => {}
        (Expected::Bytes(b), Some(o)) => assert_eq!(
            String::from_utf8_lossy(o),
            String::from_utf8_lossy(b),
            "column {i}: not masked as documented"
        ),
        (want, got) => panic!("column {i}: expected {want:?}, got {got:?}"),
    }
    if hides(s, i, binary)
        && let Some(o) = output
    {
        for secret in planted {
            assert!(
                !contains(o, secret.as_bytes()),
                "column {i}: {secret:?} survived masking"
            );
        }
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle's premise: every planted secret, standing apart, is
    /// found whole by the detectors (else "survived" would be the model's
    /// fault, not the masker's).
    #[test]
    fn planted_secrets_are_found_alone() {
        for (text, must_go) in SECRETS {
            let v = format!(" ; {text} ; ");
            let at = v.find(must_go).expect("the secret is in its text");
            let covered = merged_hits(v.as_bytes())
                .iter()
                .any(|(a, b)| *a <= at && at + must_go.len() <= *b);
            assert!(covered, "{text:?} is not found by the detectors");
        }
    }
}
