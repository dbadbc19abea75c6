//! Recorder throughput, compression and strict-mode latency, measured on the
//! real [`Recorder`] writing a throwaway `recordings.redb`:
//! `cargo run --release -p gatehouse-actors --example recorder_bench`.
//!
//! Simulated sessions (tokio tasks on two workers, like the two-core
//! appliance) send what a PostgreSQL session's taps send: a client batch and
//! a target batch per statement. Workloads:
//! - `short`: a pgbench-like point query (Query + Complete);
//! - `rows`: a 1,000-row result (Query + Columns + 1,000 Row + Complete);
//! - `term`: terminal-like output, 50 lines of a real `ls -lR /usr/share`
//!   listing as one-value Row events (the recording model has no terminal
//!   event kind yet);
//! - `mix`: per 100 statements 85 short, 5 rows, 10 term.
//!
//! Modes: `batched` sends events and goes on; `strict` waits for
//! `record_durably` of the statement's client events before "forwarding" it,
//! then sends the result events without waiting — exactly what the relay
//! does under `recording = "strict"`.
//!
//! Figures (after each phase the store is read back):
//! - raw MB/s: the events as the recorder serialises them before zstd — the
//!   MessagePack the chunks compress, measured as the decompressed size of
//!   every stored chunk — per second of the phase (final flush included);
//! - ratio: raw bytes over stored chunk bytes (postcard envelope + zstd);
//!   `file` is the growth of `recordings.redb` itself (B-tree pages, free
//!   space) over the same data;
//! - commits/s and events per commit from the recorder's commit counter;
//! - strict latency: one `record_durably` round trip as the session sees it.
//!
//! Environment: `PHASE_SECONDS` (default 3) per phase, `SESSIONS` (default 8).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_actors::recorder::{
    PendingEvent, Recorder, RecorderConfig, RecorderHandle, RecorderMsg, now_micros,
};
use gatehouse_actors::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};
use gatehouse_actors::store::schema::{Chunk, MAX_CHUNK_RAW};
use gatehouse_actors::store::{RecordingStore, SigningKey};

/// Pacing of the storage-per-hour estimate: a busy interactive shell taken
/// as a terminal that scrolls continuously, one line every 40 ms (25 lines
/// a second, a full 80×25 screen each second).
const TERMINAL_LINE_EVERY: Duration = Duration::from_millis(40);
/// Concurrent paced shells, so the recorder's group commits mix sessions as
/// they would on a busy appliance.
const PACED_SHELLS: usize = 16;
/// Lines per `term` statement: a command's screenful or two.
const TERM_LINES: usize = 50;
/// Rows per `rows` statement.
const RESULT_ROWS: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Short,
    Rows,
    Term,
    Mix,
    /// One terminal line per `TERMINAL_LINE_EVERY`.
    PacedTerm,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Batched,
    Strict,
}

struct Phase {
    workload: Workload,
    mode: Mode,
    sessions: usize,
    seconds: f64,
}

impl Phase {
    fn name(&self) -> String {
        let w = match self.workload {
            Workload::Short => "short",
            Workload::Rows => "rows",
            Workload::Term => "term",
            Workload::Mix => "mix",
            Workload::PacedTerm => "term-paced",
        };
        let m = match self.mode {
            Mode::Batched => "batched",
            Mode::Strict => "strict",
        };
        format!("{m} {w} x{}", self.sessions)
    }
}

/// What one simulated session did.
#[derive(Default)]
struct SessionStats {
    durable_waits: Vec<Duration>,
    /// Terminal text sent (line bytes only), for the per-hour estimate.
    text_bytes: u64,
}

/// What one phase measured.
struct PhaseResult {
    elapsed: Duration,
    events: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    file_growth: u64,
    commits: u64,
    waits: Vec<Duration>,
    text_bytes: u64,
}

/// A deterministic generator of statements for one session.
struct Source {
    rng: u64,
    lines: Arc<Vec<String>>,
    next_line: usize,
    next_id: u64,
}

impl Source {
    fn new(seed: u64, lines: Arc<Vec<String>>) -> Self {
        let next_line = (seed as usize * 7919) % lines.len();
        Source {
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            lines,
            next_line,
            next_id: seed * 1_000_000,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64: cheap and good enough to vary values.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn line(&mut self) -> String {
        let line = self.lines[self.next_line].clone();
        self.next_line = (self.next_line + 1) % self.lines.len();
        line
    }

    /// One statement: (client events, target events, terminal text bytes).
    fn statement(&mut self, workload: Workload) -> (Vec<PendingEvent>, Vec<PendingEvent>, u64) {
        let workload = match workload {
            Workload::Mix => match self.next() % 100 {
                0..85 => Workload::Short,
                85..90 => Workload::Rows,
                _ => Workload::Term,
            },
            w => w,
        };
        let ev = |dir, kind| PendingEvent {
            at: now_micros(),
            dir,
            kind,
        };
        match workload {
            Workload::Short | Workload::Mix => {
                let aid = self.next() % 1_000_000 + 1;
                let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
                (
                    vec![ev(Direction::Client, EventKind::Query { sql })],
                    vec![ev(
                        Direction::Target,
                        EventKind::Complete {
                            tag: "SELECT 1".into(),
                            rows: 1,
                            rows_recorded: 1,
                        },
                    )],
                    0,
                )
            }
            Workload::Rows => {
                let status = ["paid", "pending", "shipped", "refunded"];
                let sql = "SELECT id, account, customer, email, created_at, amount, status \
                           FROM orders WHERE created_at > now() - interval '1 day' \
                           ORDER BY id LIMIT 1000;"
                    .to_owned();
                let mut target = Vec::with_capacity(RESULT_ROWS + 2);
                target.push(ev(
                    Direction::Target,
                    EventKind::Columns {
                        names: [
                            "id",
                            "account",
                            "customer",
                            "email",
                            "created_at",
                            "amount",
                            "status",
                        ]
                        .map(String::from)
                        .to_vec(),
                    },
                ));
                for _ in 0..RESULT_ROWS {
                    self.next_id += 1;
                    let r = self.next();
                    let customer = r % 50_000;
                    let values = vec![
                        Some(self.next_id.to_string()),
                        Some(format!("{:016x}", self.next())),
                        Some(format!("Customer {customer}")),
                        Some(format!("customer{customer}@example.com")),
                        Some(format!(
                            "2025-06-{:02} {:02}:{:02}:{:02}.{:06}+00",
                            r % 28 + 1,
                            (r >> 8) % 24,
                            (r >> 16) % 60,
                            (r >> 24) % 60,
                            (r >> 32) % 1_000_000
                        )),
                        Some(format!("{}.{:02}", (r >> 40) % 10_000, (r >> 20) % 100)),
                        Some(status[(r >> 50) as usize % status.len()].to_owned()),
                    ];
                    target.push(ev(Direction::Target, EventKind::Row { values }));
                }
                target.push(ev(
                    Direction::Target,
                    EventKind::Complete {
                        tag: "SELECT 1000".into(),
                        rows: RESULT_ROWS as u64,
                        rows_recorded: RESULT_ROWS as u64,
                    },
                ));
                (
                    vec![ev(Direction::Client, EventKind::Query { sql })],
                    target,
                    0,
                )
            }
            Workload::Term | Workload::PacedTerm => {
                let n = if workload == Workload::Term {
                    TERM_LINES
                } else {
                    1
                };
                let mut text = 0;
                let target = (0..n)
                    .map(|_| {
                        let line = self.line();
                        text += line.len() as u64;
                        ev(
                            Direction::Target,
                            EventKind::Row {
                                values: vec![Some(line)],
                            },
                        )
                    })
                    .collect();
                // The command typed is the client side of a paced line only
                // now and then; a full-speed `term` statement has one.
                let client = if workload == Workload::Term {
                    let sql = "ls -lR /usr/share".to_owned();
                    vec![ev(Direction::Client, EventKind::Query { sql })]
                } else {
                    Vec::new()
                };
                (client, target, text)
            }
        }
    }
}

fn header(id: RecordingId) -> SessionHeader {
    SessionHeader {
        client_user: Some("bench".into()),
        connection: Some("bench".into()),
        identity: Some("bench@example.com".into()),
        groups: vec!["bench".into()],
        ..SessionHeader::new(id, "postgres", now_micros(), "127.0.0.1:50000".into())
    }
}

async fn session(
    recorder: RecorderHandle,
    workload: Workload,
    mode: Mode,
    until: Instant,
    mut source: Source,
) -> SessionStats {
    let id = RecordingId::new();
    let mut stats = SessionStats::default();
    recorder
        .send(RecorderMsg::Header(Box::new(header(id))))
        .await;
    let mut tick = tokio::time::interval(TERMINAL_LINE_EVERY);
    while Instant::now() < until {
        if workload == Workload::PacedTerm {
            tick.tick().await;
        }
        let (client, target, text) = source.statement(workload);
        stats.text_bytes += text;
        if !client.is_empty() {
            match mode {
                Mode::Batched => recorder.send(RecorderMsg::Events(id, client)).await,
                Mode::Strict => {
                    let t = Instant::now();
                    recorder
                        .record_durably(id, client)
                        .await
                        .expect("the benchmark's store is a fresh local file");
                    stats.durable_waits.push(t.elapsed());
                }
            }
        }
        recorder.send(RecorderMsg::Events(id, target)).await;
    }
    recorder
        .send(RecorderMsg::Close {
            id,
            outcome: Outcome::Closed,
            reason: None,
            at: now_micros(),
        })
        .await;
    stats
}

fn run_phase(rt: &tokio::runtime::Runtime, phase: &Phase, lines: &Arc<Vec<String>>) -> PhaseResult {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = SigningKey::load_or_create(&dir.path().join("signing.key")).expect("a fresh key");
    let db = dir.path().join("recordings.redb");
    let recorder =
        Recorder::start(&db, RecorderConfig::default(), key).expect("a fresh recording store");
    let file_before = std::fs::metadata(&db).map_or(0, |m| m.len());
    let commits_before = rt.block_on(recorder.status()).map_or(0, |s| s.commits);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(phase.seconds);
    let stats: Vec<SessionStats> = rt.block_on(async {
        let tasks: Vec<_> = (0..phase.sessions)
            .map(|i| {
                let source = Source::new(i as u64 + 1, lines.clone());
                tokio::spawn(session(
                    recorder.clone(),
                    phase.workload,
                    phase.mode,
                    until,
                    source,
                ))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("a session task does not panic"));
        }
        recorder.flush().await;
        out
    });
    let elapsed = start.elapsed();
    let commits = rt
        .block_on(recorder.status())
        .map_or(0, |s| s.commits - commits_before);
    rt.block_on(recorder.shutdown());

    let (mut events, mut raw_bytes, mut stored_bytes) = (0, 0, 0);
    let store = RecordingStore::open_read_only(&db).expect("the store just closed cleanly");
    for h in store.sessions().expect("sessions") {
        for (_, bytes) in store.raw(h.id).expect("a stored session").chunks {
            stored_bytes += bytes.len() as u64;
            let chunk = Chunk::decode(&bytes).expect("a chunk the recorder wrote");
            events += u64::from(chunk.count);
            raw_bytes += zstd::bulk::decompress(&chunk.compressed, MAX_CHUNK_RAW)
                .expect("a chunk the recorder wrote")
                .len() as u64;
        }
    }
    let file_growth = std::fs::metadata(&db).map_or(0, |m| m.len()) - file_before;
    let mut waits: Vec<Duration> = stats.iter().flat_map(|s| s.durable_waits.clone()).collect();
    waits.sort();
    PhaseResult {
        elapsed,
        events,
        raw_bytes,
        stored_bytes,
        file_growth,
        commits,
        waits,
        text_bytes: stats.iter().map(|s| s.text_bytes).sum(),
    }
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Real terminal text: the lines of `ls -lR /usr/share` (first 4 MiB), or a
/// synthetic listing where that command is missing.
fn terminal_lines() -> Vec<String> {
    let listing = std::process::Command::new("ls")
        .args(["-lR", "/usr/share"])
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let listing = &listing[..listing.len().min(4 << 20)];
    let mut lines: Vec<String> = String::from_utf8_lossy(listing)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.chars().take(200).collect())
        .collect();
    if lines.len() < 1000 {
        lines = (0..20_000)
            .map(|i| {
                format!(
                    "-rw-r--r-- 1 root root {:>8} Jan {:>2} 12:{:02} file-{i:05}.txt",
                    i * 37 % 100_000,
                    i % 28 + 1,
                    i % 60
                )
            })
            .collect();
    }
    lines
}

/// The disk's own floor: 4 KiB appended and `fdatasync`ed, median and p99.
fn fdatasync_floor(dir: &Path) -> (f64, f64) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("sync-probe")).expect("a probe file");
    let block = [0x5a_u8; 4096];
    let mut t: Vec<Duration> = (0..300)
        .map(|_| {
            f.write_all(&block).expect("a probe write");
            let s = Instant::now();
            f.sync_data().expect("fdatasync");
            s.elapsed()
        })
        .collect();
    t.sort();
    (quantile(&t, 0.5), quantile(&t, 0.99))
}

/// redb's floor on the same disk: one small insert per durable commit, in
/// the recorder's concurrency mode; median and p99 of `commit()` alone.
fn redb_floor(dir: &Path) -> (f64, f64) {
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("probe");
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .create(dir.join("probe.redb"))
        .expect("a probe database");
    let value = [0x5a_u8; 300];
    let mut t: Vec<Duration> = (0..300_u64)
        .map(|i| {
            let txn = db.begin_write().expect("a write transaction");
            txn.open_table(T)
                .expect("the probe table")
                .insert(i, value.as_slice())
                .expect("an insert");
            let s = Instant::now();
            txn.commit().expect("a commit");
            s.elapsed()
        })
        .collect();
    t.sort();
    (quantile(&t, 0.5), quantile(&t, 0.99))
}

fn main() {
    let seconds: f64 = std::env::var("PHASE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let sessions: usize = std::env::var("SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let lines = Arc::new(terminal_lines());
    let avg_line = lines.iter().map(|l| l.len()).sum::<usize>() as f64 / lines.len() as f64;

    let probe = tempfile::tempdir().expect("a temporary directory");
    let (fs_med, fs_p99) = fdatasync_floor(probe.path());
    let (rc_med, rc_p99) = redb_floor(probe.path());
    println!("== floors on this disk (ms)");
    println!("fdatasync of 4 KiB            median {fs_med:.3}  p99 {fs_p99:.3}");
    println!("redb commit, one small insert median {rc_med:.3}  p99 {rc_p99:.3}");

    let phase = |workload, mode, sessions| Phase {
        workload,
        mode,
        sessions,
        seconds,
    };
    let phases = [
        phase(Workload::Short, Mode::Batched, sessions),
        phase(Workload::Rows, Mode::Batched, sessions),
        phase(Workload::Term, Mode::Batched, sessions),
        phase(Workload::Mix, Mode::Batched, sessions),
        phase(Workload::Short, Mode::Strict, 1),
        phase(Workload::Short, Mode::Strict, sessions),
        phase(Workload::Mix, Mode::Strict, sessions),
    ];
    println!(
        "== recorder, {seconds} s per phase (raw = encoded events before zstd; ratio = raw / stored chunks)"
    );
    println!(
        "{:<20} {:>10} {:>8} {:>6} {:>6} {:>9} {:>8} {:>9} {:>9}",
        "phase",
        "events/s",
        "raw MB/s",
        "ratio",
        "file",
        "commits/s",
        "ev/commit",
        "wait p50",
        "wait p99"
    );
    for p in &phases {
        let r = run_phase(&rt, p, &lines);
        let secs = r.elapsed.as_secs_f64();
        let (p50, p99) = if r.waits.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.3}ms", quantile(&r.waits, 0.5)),
                format!("{:.3}ms", quantile(&r.waits, 0.99)),
            )
        };
        println!(
            "{:<20} {:>10.0} {:>8.1} {:>6.1} {:>6.1} {:>9.0} {:>8.1} {:>9} {:>9}",
            p.name(),
            r.events as f64 / secs,
            r.raw_bytes as f64 / secs / 1e6,
            r.raw_bytes as f64 / r.stored_bytes.max(1) as f64,
            r.raw_bytes as f64 / r.file_growth.max(1) as f64,
            r.commits as f64 / secs,
            r.events as f64 / r.commits.max(1) as f64,
            p50,
            p99,
        );
    }

    // Storage per hour of a busy shell: paced, so chunks are as small as
    // the flush interval makes them, which is what a real shell costs.
    let paced = Phase {
        workload: Workload::PacedTerm,
        mode: Mode::Batched,
        sessions: PACED_SHELLS,
        seconds: seconds.max(5.0),
    };
    let r = run_phase(&rt, &paced, &lines);
    let shell_seconds = paced.sessions as f64 * r.elapsed.as_secs_f64();
    let text_rate = r.text_bytes as f64 / shell_seconds;
    let per_hour = |bytes: u64| bytes as f64 / shell_seconds * 3600.0 / 1e6;
    println!(
        "== storage per hour of a busy shell ({} shells, {:.0} s, flush_interval {} ms)",
        paced.sessions,
        r.elapsed.as_secs_f64(),
        RecorderConfig::default().flush_interval.as_millis()
    );
    println!(
        "assumed: one {avg_line:.0}-byte line of `ls -lR /usr/share` every {} ms = {:.2} KB/s of text, {:.1} MB/h",
        TERMINAL_LINE_EVERY.as_millis(),
        text_rate / 1e3,
        text_rate * 3600.0 / 1e6
    );
    println!(
        "stored: {:.1} MB/h in chunks ({:.2} stored bytes per text byte, raw encoding {:.1}x the text), {:.1} MB/h of redb file",
        per_hour(r.stored_bytes),
        r.stored_bytes as f64 / r.text_bytes.max(1) as f64,
        r.raw_bytes as f64 / r.text_bytes.max(1) as f64,
        per_hour(r.file_growth)
    );
}
