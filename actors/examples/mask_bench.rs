//! Throughput of COPY text masking on ~200 MB of realistic rows.
//!
//! `cargo run --release --example mask_bench [MB]`
//!
//! Rows: id, name, e-mail, card number, ~1000 chars of free text (words, dates,
//! amounts, order numbers). Each row is fed as its own CopyData message, as
//! PostgreSQL sends them.

use std::collections::BTreeSet;
use std::time::Instant;

use gatehouse_actors::mask::{
    ColumnInfo, CopyFormat, CopyMasker, DETECTORS, MaskRule, MaskStats, Masker, RowPlan, Strategy,
};

const WORDS: &[&str] = &[
    "the",
    "customer",
    "asked",
    "about",
    "delivery",
    "of",
    "order",
    "and",
    "invoice",
    "payment",
    "was",
    "received",
    "on",
    "account",
    "please",
    "contact",
    "support",
    "regarding",
    "shipment",
    "status",
    "update",
    "refund",
    "processed",
    "within",
    "business",
    "days",
    "thank",
    "you",
    "for",
    "your",
    "patience",
    "we",
    "have",
    "escalated",
    "this",
    "ticket",
    "to",
    "billing",
    "team",
    "address",
    "changed",
    "warehouse",
    "Berlin",
    "Lisbon",
    "Chicago",
    "product",
    "returned",
    "damaged",
    "packaging",
    "replacement",
    "sent",
    "via",
    "express",
    "courier",
    "tracking",
    "number",
    "is",
    "available",
    "in",
    "portal",
    "note:",
    "call",
    "back",
    "tomorrow",
    "morning,",
    "agent",
    "Maria",
    "confirmed",
    "discount",
    "applied",
    "(see",
    "attached)",
    "total",
    "EUR",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn luhn_complete(prefix: &[u8]) -> u8 {
    // Check digit making prefix+d pass Luhn.
    for d in 0..10u8 {
        let mut sum = 0u32;
        let all: Vec<u8> = prefix.iter().copied().chain([d]).collect();
        for (i, &x) in all.iter().rev().enumerate() {
            let mut v = u32::from(x);
            if i % 2 == 1 {
                v *= 2;
                if v > 9 {
                    v -= 9;
                }
            }
            sum += v;
        }
        if sum.is_multiple_of(10) {
            return d;
        }
    }
    0
}

fn free_text(rng: &mut Rng, out: &mut String) {
    let start = out.len();
    while out.len() - start < 1000 {
        match rng.below(40) {
            0 => out.push_str(&format!(
                "2024-{:02}-{:02}",
                1 + rng.below(12),
                1 + rng.below(28)
            )),
            1 => out.push_str(&format!("#{}", 100000 + rng.below(900000))),
            2 => out.push_str(&format!("{}.{:02}", rng.below(5000), rng.below(100))),
            3 => out.push_str(&format!(
                "+49 30 {} {}",
                1000 + rng.below(9000),
                1000 + rng.below(9000)
            )),
            _ => out.push_str(WORDS[rng.below(WORDS.len())]),
        }
        out.push(' ');
    }
}

/// `with_matches`: e-mail and a Luhn-valid card in their columns; else look-alikes.
fn build(target: usize, with_matches: bool) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let first = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let last = [
        "smith", "jones", "müller", "garcia", "rossi", "dubois", "novak", "silva",
    ];
    let mut rows = Vec::new();
    let mut total = 0;
    let mut id = 1u64;
    while total < target {
        let f = first[rng.below(first.len())];
        let l = last[rng.below(last.len())];
        let mut row = format!("{id}\t{f} {l}\t");
        if with_matches {
            row.push_str(&format!("{f}.{l}{}@example.com\t", rng.below(1000)));
            let mut digits: Vec<u8> = vec![4];
            for _ in 0..14 {
                digits.push(rng.below(10) as u8);
            }
            let c = luhn_complete(&digits);
            digits.push(c);
            for (i, d) in digits.iter().enumerate() {
                if i > 0 && i % 4 == 0 {
                    row.push(' ');
                }
                row.push((b'0' + d) as char);
            }
        } else {
            row.push_str(&format!(
                "{f}.{l} at example dot com\tORD-{}",
                rng.below(1_000_000)
            ));
        }
        row.push('\t');
        free_text(&mut rng, &mut row);
        row.push('\n');
        total += row.len();
        rows.push(row.into_bytes());
        id += 1;
    }
    rows
}

/// CPU time this thread has run (ns precision, Linux schedstat). The machine may be
/// shared, so CPU time is the fairer per-core figure; wall time is printed too.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn run(name: &str, masker: &Masker, plan: &RowPlan, rows: &[Vec<u8>], bytes: usize) -> f64 {
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    let mut out_len = 0;
    let mut masked = 0u64;
    for _ in 0..5 {
        let c0 = cpu_seconds();
        let mut cm = CopyMasker::new(masker, plan.clone(), CopyFormat::text());
        let mut out = Vec::with_capacity(64 * 1024);
        let mut stats = MaskStats::default();
        out_len = 0;
        let t = Instant::now();
        for r in rows {
            cm.feed(r, &mut out, &mut stats).unwrap();
            // Simulate handing the bytes to the socket writer.
            out_len += out.len();
            out.clear();
        }
        cm.finish(&mut out, &mut stats).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c0, cpu_seconds()) {
            best_cpu = best_cpu.min(b - a);
        }
        masked = stats.take().iter().map(|e| e.2).sum();
    }
    let wall = bytes as f64 / 1e6 / best;
    let cpu = bytes as f64 / 1e6 / best_cpu;
    println!(
        "{name:<44} {cpu:>6.0} MB/s cpu {wall:>6.0} MB/s wall  ({masked} masked, {out_len} B out)"
    );
    cpu
}

fn masker(detectors: &[&str], columns: &[&str]) -> Masker {
    Masker::new(
        vec![MaskRule {
            name: "bench".into(),
            columns: columns.iter().map(|s| s.to_string()).collect(),
            detectors: detectors.iter().map(|s| s.to_string()).collect(),
            regex: vec![],
            strategy: Strategy::Redact,
        }],
        [42; 32],
    )
    .expect("valid rules")
}

fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    // Optional: a comma-separated detector list to run alone (profiling), on no-match
    // rows or, with a third argument `match`, on rows with matches.
    if let Some(only) = std::env::args().nth(2) {
        let dets: Vec<&str> = only.split(',').collect();
        let cols: Vec<ColumnInfo> = ["id", "name", "email", "card", "notes"]
            .iter()
            .map(|n| ColumnInfo::from_table(n, "public.customers", n))
            .collect();
        let with_matches = std::env::args().nth(3).as_deref() == Some("match");
        let rows = build(mb * 1_000_000, with_matches);
        let bytes: usize = rows.iter().map(Vec::len).sum();
        let m = masker(&dets, &[]);
        run(&only, &m, &m.plan(&cols, &BTreeSet::new()), &rows, bytes);
        return;
    }
    let cols: Vec<ColumnInfo> = ["id", "name", "email", "card", "notes"]
        .iter()
        .map(|n| ColumnInfo::from_table(n, "public.customers", n))
        .collect();
    let none = BTreeSet::new();

    for with_matches in [true, false] {
        let rows = build(mb * 1_000_000, with_matches);
        let bytes: usize = rows.iter().map(Vec::len).sum();
        println!(
            "\n{} rows, {:.0} MB, {}",
            rows.len(),
            bytes as f64 / 1e6,
            if with_matches {
                "every row has an e-mail and a valid card"
            } else {
                "no matches (look-alike columns)"
            }
        );
        let empty = masker(&[], &["nonexistent_column"]);
        let passthrough = Masker::new(vec![], [0; 32]).unwrap();
        run(
            "passthrough (noop plan, memcpy)",
            &passthrough,
            &passthrough.plan(&cols, &none),
            &rows,
            bytes,
        );
        // A rule on a 6th column that the rows do not have: rows and fields are split, nothing masked.
        let mut cols6 = cols.clone();
        cols6.push(ColumnInfo::named("nonexistent_column"));
        let base = run(
            "line+field scan, no masker work",
            &empty,
            &empty.plan(&cols6, &none),
            &rows,
            bytes,
        );
        let m = masker(&["email", "credit_card"], &[]);
        let det = run(
            "email + credit_card detectors",
            &m,
            &m.plan(&cols, &none),
            &rows,
            bytes,
        );
        // The relay moves ~300 MB/s; masking runs inline on the same core.
        let relay = 300.0;
        let combined = 1.0 / (1.0 / relay + 1.0 / det - 1.0 / base);
        println!(
            "  => relay at {relay:.0} MB/s with e-mail+card masking: {combined:.0} MB/s ({:.0} % kept)",
            combined / relay * 100.0
        );
        let m = masker(DETECTORS, &[]);
        run("all 8 detectors", &m, &m.plan(&cols, &none), &rows, bytes);
        let m = masker(&["email", "credit_card"], &["email"]);
        run(
            "column rule on email + email/card detectors",
            &m,
            &m.plan(&cols, &none),
            &rows,
            bytes,
        );
    }
}
