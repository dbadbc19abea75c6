//! Target `mask_rows`: DataRow masking and error/notice text masking, with
//! an oracle rather than only "no panic".
//!
//! The input drives [`mask_model::setup`] (column rules and detectors under
//! every strategy pairing, columns with sources, types, formats, statement
//! mentions) and generated rows whose values carry planted secrets. Each
//! masked row must decode to the same width, keep its NULLs, leave passed
//! columns byte for byte, mask each value exactly as the reference model
//! says — and no planted secret may appear in a column that is masked or
//! scanned. Arbitrary bytes as a row body must be refused or masked, never
//! panic. Error texts with planted secrets (also in `Key (col)=(value)`
//! details of masked columns) must come out without them.

use arbitrary::Unstructured;
use gatehouse_actors::mask::MaskStats;
use gatehouse_actors::pg::messages;

use crate::mask_model::{self, contains};
use crate::wire;

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
}

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let s = mask_model::setup(u, true)?;
    let mut stats = MaskStats::default();
    match u.int_in_range(0..=7)? {
        0 => {
            // Any bytes as a body.
            let body = u.bytes(u.len())?;
            match s.masker.mask_data_row(&s.plan, body, &mut stats) {
                Ok(Some(out)) => {
                    let a = messages::data_row(body).expect("only well-formed rows are masked");
                    let b = messages::data_row(&out).expect("masked rows are well-formed");
                    assert_eq!(a.len(), b.len());
                }
                Ok(None) => {
                    assert!(
                        messages::data_row(body).is_ok(),
                        "a malformed row was passed"
                    );
                }
                Err(_) => assert!(
                    messages::data_row(body).is_err(),
                    "a well-formed row was refused"
                ),
            }
        }
        1 => {
            // Free text: error messages and details.
            let mut text = Vec::new();
            let mut planted = Vec::new();
            // Values made of arbitrary bytes (no planted secret): a secret's
            // text spelled out in them has no context that marks it.
            let mut unmarked = Vec::new();
            if u.arbitrary()? {
                let (v, p) = mask_model::value(u)?;
                text.extend_from_slice(b"Key (secret)=(");
                text.extend_from_slice(&v);
                text.extend_from_slice(b") already exists.");
                if p.is_empty() {
                    unmarked.extend_from_slice(&v);
                }
                if s.masker.has_column_rules() {
                    planted.extend(p);
                }
            }
            let (v, p) = mask_model::value(u)?;
            text.extend_from_slice(&v);
            if p.is_empty() {
                unmarked.extend_from_slice(&v);
            }
            planted.extend(p);
            planted.retain(|secret| !contains(&unmarked, secret.as_bytes()));
            let text = String::from_utf8_lossy(&text).into_owned();
            let out = s
                .masker
                .mask_text(&text, &mut stats)
                .unwrap_or_else(|| text.clone());
            for secret in planted {
                assert!(
                    !contains(out.as_bytes(), secret.as_bytes()),
                    "{secret:?} survived in text {out:?}"
                );
            }
        }
        _ => {
            let n = u.int_in_range(0..=s.columns.len() + 2)?;
            let mut values = Vec::new();
            let mut planted = Vec::new();
            for _ in 0..n {
                if u.ratio(1, 5)? {
                    values.push(None);
                    planted.push(Vec::new());
                } else {
                    let (v, p) = mask_model::value(u)?;
                    values.push(Some(v));
                    planted.push(p);
                }
            }
            let mut body = Vec::new();
            wire::i16(&mut body, n as i16);
            for v in &values {
                wire::value(&mut body, v.as_deref());
            }
            let out = s
                .masker
                .mask_data_row(&s.plan, &body, &mut stats)
                .expect("a well-formed row is masked");
            let out = out.unwrap_or_else(|| body.clone());
            let got = messages::data_row(&out).expect("a masked row is well-formed");
            assert_eq!(got.len(), n, "masking changed the row's width");
            for (i, (input, output)) in values.iter().zip(&got).enumerate() {
                let binary = s.columns.get(i).is_some_and(|c| c.binary);
                mask_model::check_value(&s, i, binary, input.as_deref(), *output, &planted[i]);
            }
        }
    }
    Ok(())
}
