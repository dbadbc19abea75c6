//! Median classification time for a short and a ~10 KB statement: `cargo run --release --example classify_bench`.
//! The short statement is timed parsed each time and as the gateway meets it again with another integer (one
//! parse per shape, see `policy::shape`).

use std::time::Instant;

use gatehouse_actors::policy::StatementInfo;
use gatehouse_actors::policy::classify::{Unparsed, classify, classify_uncached};

fn median_micros(
    classify: fn(&str) -> Result<Vec<StatementInfo>, Unparsed>,
    sql: &str,
    iterations: usize,
) -> f64 {
    // warm up
    for _ in 0..iterations / 10 + 1 {
        std::hint::black_box(
            classify(std::hint::black_box(sql)).expect("benchmark SQL must parse"),
        );
    }
    let mut samples: Vec<f64> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(
                classify(std::hint::black_box(sql)).expect("benchmark SQL must parse"),
            );
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn long_statement() -> String {
    let mut sql = String::from("SELECT ");
    let columns: Vec<String> = (0..170)
        .map(|i| match i % 4 {
            0 => format!("c.col_{i}"),
            1 => format!("lower(o.col_{i}) AS l_{i}"),
            2 => format!("coalesce(p.col_{i}, 0) + {i} AS s_{i}"),
            _ => format!("CASE WHEN o.flag_{i} THEN c.a_{i} ELSE p.b_{i} END AS k_{i}"),
        })
        .collect();
    sql.push_str(&columns.join(", "));
    sql.push_str(
        " FROM public.customers c JOIN orders o ON o.customer_id = c.id LEFT JOIN payments p ON p.order_id = o.id \
         JOIN (SELECT customer_id, max(created_at) AS last FROM audit.events GROUP BY customer_id) e ON e.customer_id = c.id \
         WHERE c.region IN (",
    );
    sql.push_str(
        &(0..300)
            .map(|i| format!("'r{i}'"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    sql.push_str(") AND o.status IN (");
    sql.push_str(
        &(0..300)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    sql.push_str(") AND c.deleted_at IS NULL ORDER BY c.id DESC LIMIT 100");
    sql
}

fn main() {
    let short = "SELECT id, email FROM customers WHERE id = 42";
    let long = long_statement();
    let mib = "SELECT 1;".repeat((1 << 20) / 9);
    println!(
        "short ({} bytes): median {:.1} µs parsed, {:.1} µs by its shape",
        short.len(),
        median_micros(classify_uncached, short, 20_000),
        median_micros(classify, short, 20_000)
    );
    println!(
        "long ({} bytes): median {:.1} µs",
        long.len(),
        median_micros(classify, &long, 2_000)
    );
    let t = Instant::now();
    let n = classify(&mib).expect("parses").len();
    println!(
        "1 MiB of `SELECT 1;` ({n} statements): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}
