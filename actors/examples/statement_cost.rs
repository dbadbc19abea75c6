//! Median cost per statement of what the policy does to a client's SQL:
//! classification, and masking it for the recording under the bench's
//! five mask rules. `cargo run --release --example statement_cost`.

use std::time::Instant;

use gatehouse_actors::mask::{MaskRule, MaskStats, Masker, Strategy};
use gatehouse_actors::policy::classify::{classify, classify_uncached};

fn median_micros(iterations: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..iterations / 10 + 1 {
        f(i);
    }
    let mut samples: Vec<f64> = (0..iterations)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn rule(name: &str, columns: &[&str], detectors: &[&str], strategy: Strategy) -> MaskRule {
    MaskRule {
        name: name.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        detectors: detectors.iter().map(|c| c.to_string()).collect(),
        regex: vec![],
        strategy,
    }
}

fn main() {
    let masker = Masker::new(
        vec![
            rule(
                "m1",
                &["email", "customers.ssn"],
                &[],
                Strategy::Partial { keep: 4 },
            ),
            rule("m2", &["pgbench_accounts.filler"], &[], Strategy::Hash),
            rule("m3", &[], &["credit_card", "email"], Strategy::Redact),
            rule("m4", &[], &["us_ssn", "iban"], Strategy::Redact),
            rule(
                "m5",
                &[],
                &["aws_access_key", "jwt", "pem_private_key"],
                Strategy::Redact,
            ),
        ],
        [7; 32],
    )
    .expect("rules");
    let sqls: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                1 + i * 997
            )
        })
        .collect();
    let n = 50_000;
    let parsed = median_micros(n, |i| {
        std::hint::black_box(classify_uncached(&sqls[i % sqls.len()]).expect("parses"));
    });
    let c = median_micros(n, |i| {
        std::hint::black_box(classify(&sqls[i % sqls.len()]).expect("parses"));
    });
    let mut stats = MaskStats::default();
    let m = median_micros(n, |i| {
        std::hint::black_box(masker.mask_sql(&sqls[i % sqls.len()], &mut stats));
    });
    println!(
        "pgbench -S statement: classify {parsed:.1} µs parsed, {c:.1} µs by its shape; mask for the recording {m:.1} µs"
    );
}
