//! DataRow rewriting. The body comes from the network: every length is checked,
//! nothing panics, malformed bodies are errors (never forwarded).

use super::{Decision, MaskError, MaskStats, Masker, RowPlan};

#[inline]
fn read_i32(b: &[u8], pos: usize) -> Option<i32> {
    let s = b.get(pos..pos.checked_add(4)?)?;
    Some(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl Masker {
    /// Rewrite one DataRow body (after the `D` tag and length). `None` when nothing
    /// changed (forward the original bytes); otherwise the new body, in which only
    /// the masked columns are rebuilt (other columns are copied byte for byte).
    /// Columns beyond the plan get the plan's default action.
    pub fn mask_data_row(
        &self,
        plan: &RowPlan,
        body: &[u8],
        stats: &mut MaskStats,
    ) -> Result<Option<Vec<u8>>, MaskError> {
        if !plan.made_by(self) {
            return Err(MaskError::PlanMismatch);
        }
        let count = body
            .get(..2)
            .map(|s| i16::from_be_bytes([s[0], s[1]]))
            .ok_or(MaskError::DataRow("missing column count"))?;
        if count < 0 {
            return Err(MaskError::DataRow("negative column count"));
        }
        let mut pos = 2usize;
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0usize;
        let mut hits = Vec::new();
        for i in 0..count as usize {
            let len = read_i32(body, pos).ok_or(MaskError::DataRow("truncated column length"))?;
            let vstart = pos + 4;
            if len == -1 {
                pos = vstart;
                continue;
            }
            let len =
                usize::try_from(len).map_err(|_| MaskError::DataRow("invalid column length"))?;
            let vend = vstart
                .checked_add(len)
                .filter(|&e| e <= body.len())
                .ok_or(MaskError::DataRow("column value exceeds message"))?;
            let col = plan.col(i);
            let d = self.decide(col, col.binary, &body[vstart..vend], &mut hits, stats);
            if d != Decision::Unchanged {
                let o = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 32));
                o.extend_from_slice(&body[copied..pos]);
                if d == Decision::Null {
                    o.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    let lp = o.len();
                    o.extend_from_slice(&[0; 4]);
                    self.render(d, &body[vstart..vend], &hits, o);
                    let nl = i32::try_from(o.len() - lp - 4)
                        .map_err(|_| MaskError::DataRow("masked value too long"))?;
                    o[lp..lp + 4].copy_from_slice(&nl.to_be_bytes());
                }
                copied = vend;
            }
            pos = vend;
        }
        if pos != body.len() {
            return Err(MaskError::DataRow("trailing bytes after last column"));
        }
        Ok(out.map(|mut o| {
            o.extend_from_slice(&body[copied..]);
            o
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::super::{ColumnInfo, MaskRule, Strategy};
    use super::*;

    pub(crate) fn build_row(cols: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = (cols.len() as i16).to_be_bytes().to_vec();
        for c in cols {
            match c {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    pub(crate) fn parse_row(b: &[u8]) -> Vec<Option<Vec<u8>>> {
        let n = i16::from_be_bytes([b[0], b[1]]) as usize;
        let mut pos = 2;
        let mut out = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes(b[pos..pos + 4].try_into().unwrap());
            pos += 4;
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(b[pos..pos + len as usize].to_vec()));
                pos += len as usize;
            }
        }
        assert_eq!(pos, b.len());
        out
    }

    fn masker() -> Masker {
        Masker::new(
            vec![
                MaskRule {
                    name: "pii".into(),
                    columns: vec!["customers.email".into()],
                    detectors: vec!["email".into(), "credit_card".into()],
                    regex: vec![],
                    strategy: Strategy::Redact,
                },
                MaskRule {
                    name: "cards".into(),
                    columns: vec!["card".into()],
                    detectors: vec![],
                    regex: vec![],
                    strategy: Strategy::Partial { keep: 4 },
                },
            ],
            [1; 32],
        )
        .unwrap()
    }

    fn cols() -> Vec<ColumnInfo> {
        vec![
            ColumnInfo::from_table("id", "public.customers", "id"),
            ColumnInfo::from_table("e", "public.customers", "email"),
            ColumnInfo::from_table("card", "public.customers", "card"),
            ColumnInfo::from_table("notes", "public.customers", "notes"),
            ColumnInfo {
                binary: true,
                type_oid: 25,
                ..ColumnInfo::from_table("bin", "public.customers", "bin")
            },
            ColumnInfo {
                binary: true,
                type_oid: 20,
                ..ColumnInfo::from_table("n", "public.customers", "n")
            },
        ]
    }

    #[test]
    fn rewrite_round_trip() {
        let m = masker();
        let plan = m.plan(&cols(), &BTreeSet::new());
        let bin8 = 42i64.to_be_bytes();
        let row = build_row(&[
            Some(b"17"),
            Some(b"alice@example.com"),
            Some(b"4242 4242 4242 4242"),
            Some(b"call bob@x.org re 4111111111111111 please"),
            Some(b"plain text"),
            Some(&bin8),
        ]);
        let mut stats = MaskStats::default();
        let out = m.mask_data_row(&plan, &row, &mut stats).unwrap().unwrap();
        let got = parse_row(&out);
        assert_eq!(got[0].as_deref(), Some(&b"17"[..]));
        assert_eq!(got[1].as_deref(), Some(&b"[redacted]"[..]));
        assert_eq!(got[2].as_deref(), Some(&b"**** **** **** 4242"[..]));
        assert_eq!(
            got[3].as_deref(),
            Some(&b"call [redacted] re [redacted] please"[..])
        );
        assert_eq!(got[4].as_deref(), Some(&b"plain text"[..]));
        assert_eq!(got[5].as_deref(), Some(&bin8[..]));
        let mut s = stats.take();
        s.sort();
        assert_eq!(
            s,
            vec![
                ("cards".into(), "card".into(), 1),
                ("pii".into(), "credit_card".into(), 1),
                ("pii".into(), "e".into(), 1),
                ("pii".into(), "email".into(), 1),
            ]
        );
    }

    #[test]
    fn nulls_and_unchanged() {
        let m = masker();
        let plan = m.plan(&cols(), &BTreeSet::new());
        let mut stats = MaskStats::default();
        let row = build_row(&[None, None, None, Some(b"nothing here"), None, None]);
        assert_eq!(m.mask_data_row(&plan, &row, &mut stats).unwrap(), None);
        assert!(stats.is_empty());
        // NULL preserved next to a masked column; binary text match → NULL.
        let row = build_row(&[None, Some(b"x"), None, None, Some(b"to a@b.io"), None]);
        let got = parse_row(&m.mask_data_row(&plan, &row, &mut stats).unwrap().unwrap());
        assert_eq!(
            got,
            vec![None, Some(b"[redacted]".to_vec()), None, None, None, None]
        );
        // Empty row.
        assert_eq!(
            m.mask_data_row(&plan, &build_row(&[]), &mut stats).unwrap(),
            None
        );
    }

    #[test]
    fn strategies_in_rows() {
        let mk = |s: Strategy| {
            Masker::new(
                vec![MaskRule {
                    name: "r".into(),
                    columns: vec!["secret".into()],
                    detectors: vec!["email".into()],
                    regex: vec![r"ORD-\d{6}".into()],
                    strategy: s,
                }],
                [3; 32],
            )
            .unwrap()
        };
        let cols = vec![
            ColumnInfo::named("secret"),
            ColumnInfo::named("txt"),
            ColumnInfo {
                type_oid: 23,
                ..ColumnInfo::named("secret")
            },
        ];
        let row = build_row(&[Some(b"s3"), Some(b"x ORD-123456 a@b.co"), Some(b"12")]);
        let mut st = MaskStats::default();

        let m = mk(Strategy::Null);
        let got = parse_row(
            &m.mask_data_row(&m.plan(&cols, &BTreeSet::new()), &row, &mut st)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(got, vec![None, None, None]);

        let m = mk(Strategy::Hash);
        let got = parse_row(
            &m.mask_data_row(&m.plan(&cols, &BTreeSet::new()), &row, &mut st)
                .unwrap()
                .unwrap(),
        );
        let h = String::from_utf8(got[1].clone().unwrap()).unwrap();
        assert!(h.starts_with("x hash:") && h.contains(" hash:"), "{h}");
        assert_eq!(got[2], None, "typed (int4) column masks to NULL");

        let m = mk(Strategy::Partial { keep: 2 });
        let got = parse_row(
            &m.mask_data_row(&m.plan(&cols, &BTreeSet::new()), &row, &mut st)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(got[0].as_deref(), Some(&b"*3"[..]));
        assert_eq!(got[1].as_deref(), Some(&b"x ***-****56 ****co"[..]));
    }

    #[test]
    fn plan_from_other_masker_is_rejected() {
        let a = masker();
        let b = masker();
        let plan = a.plan(&cols(), &BTreeSet::new());
        let row = build_row(&[Some(b"1"), Some(b"x")]);
        let mut st = MaskStats::default();
        assert_eq!(
            b.mask_data_row(&plan, &row, &mut st),
            Err(MaskError::PlanMismatch)
        );
    }

    #[test]
    fn malformed_rows_are_errors() {
        let m = masker();
        let plan = m.plan(&cols(), &BTreeSet::new());
        let mut st = MaskStats::default();
        let good = build_row(&[Some(b"a"), Some(b"b@c.de")]);
        for cut in 0..good.len() {
            assert!(
                m.mask_data_row(&plan, &good[..cut], &mut st).is_err(),
                "cut {cut}"
            );
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(m.mask_data_row(&plan, &extra, &mut st).is_err());
        let mut neg = good.clone();
        neg[0] = 0xff;
        assert!(m.mask_data_row(&plan, &neg, &mut st).is_err());
        let bad_len = [0, 1, 0xff, 0xff, 0xff, 0xfe];
        assert!(m.mask_data_row(&plan, &bad_len, &mut st).is_err());
        let huge = [0, 1, 0x7f, 0xff, 0xff, 0xff, b'x'];
        assert!(m.mask_data_row(&plan, &huge, &mut st).is_err());
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let m = masker();
            let plan = m.plan(&cols(), &BTreeSet::new());
            let mut st = MaskStats::default();
            let _ = m.mask_data_row(&plan, &body, &mut st);
            let _ = m.mask_data_row(&m.default_plan(), &body, &mut st);
        }

        #[test]
        fn random_rows_round_trip(vals in proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)), 0..12)) {
            let refs: Vec<Option<&[u8]>> = vals.iter().map(|v| v.as_deref()).collect();
            let row = build_row(&refs);
            let m = masker();
            let mut st = MaskStats::default();
            // Empty plan → never changes.
            let empty = Masker::new(vec![], [0; 32]).unwrap();
            prop_assert_eq!(empty.mask_data_row(&empty.default_plan(), &row, &mut st).unwrap(), None);
            // With detectors: output parses, same column count, NULLs preserved.
            let plan = m.default_plan();
            match m.mask_data_row(&plan, &row, &mut st).unwrap() {
                None => {}
                Some(out) => {
                    let got = parse_row(&out);
                    prop_assert_eq!(got.len(), vals.len());
                    for (g, v) in got.iter().zip(&vals) {
                        if v.is_none() { prop_assert!(g.is_none()); }
                    }
                }
            }
        }
    }
}
