//! The strict sessions' write-ahead log: events acknowledged through it
//! reach the store after a crash, exactly once, in order, with a chain and
//! seal that verify — whether redb held none, some or all of them.
//!
//! A crash is simulated by copying the log aside while the recorder runs
//! (it is durable the moment a strict session is answered) and starting a
//! new recorder over it, with or without the first run's store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_actors::recorder::{
    PendingEvent, Recorder, RecorderConfig, RecorderHandle, RecorderMsg,
};
use gatehouse_actors::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};
use gatehouse_actors::store::retention::Criteria;
use gatehouse_actors::store::{RecordingStore, SigningKey, Verdict};

fn header(id: RecordingId) -> SessionHeader {
    SessionHeader {
        client_user: Some("strict-bot".into()),
        connection: Some("db".into()),
        identity: Some("strict-bot".into()),
        ..SessionHeader::new(id, "postgres", 1, "127.0.0.1:1".into())
    }
}

fn queries(range: std::ops::Range<u32>) -> Vec<PendingEvent> {
    range
        .map(|i| PendingEvent {
            at: 100 + i64::from(i),
            dir: Direction::Client,
            kind: EventKind::Query {
                sql: format!("insert into ledger values ({i})"),
            },
        })
        .collect()
}

/// Batched folds never happen on their own during a test.
fn config() -> RecorderConfig {
    RecorderConfig {
        flush_interval: Duration::from_secs(3600),
        ..RecorderConfig::default()
    }
}

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_owned();
        Dir { _tmp: tmp, path }
    }
    fn store(&self) -> PathBuf {
        self.path.join("recordings.redb")
    }
    fn wal(&self) -> PathBuf {
        self.path.join("recordings.wal")
    }
    fn key(&self) -> SigningKey {
        SigningKey::load_or_create(&self.path.join("key")).unwrap()
    }
    fn start(&self) -> RecorderHandle {
        Recorder::start(&self.store(), config(), self.key()).unwrap()
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

/// Open the store after a (simulated) restart and return the session's
/// queries, outcome and verdict.
async fn recovered(dir: &Dir, id: RecordingId) -> (Vec<String>, Option<Outcome>, Verdict) {
    dir.start().shutdown().await;
    let store = RecordingStore::open_read_only(&dir.store()).unwrap();
    let sql = store
        .events(id)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Query { sql } => Some(sql),
            _ => None,
        })
        .collect();
    let outcome = store.header(id).unwrap().outcome;
    let verdict = store.verify(id, &dir.key().public_key()).unwrap();
    (sql, outcome, verdict)
}

fn expected(n: u32) -> Vec<String> {
    (0..n)
        .map(|i| format!("insert into ledger values ({i})"))
        .collect()
}

/// A recorder on `dir` with session `id` open and three strict
/// statements acknowledged.
async fn three_strict_statements(dir: &Dir, id: RecordingId) -> RecorderHandle {
    let recorder = dir.start();
    recorder
        .send(RecorderMsg::Header(Box::new(header(id))))
        .await;
    recorder.record_durably(id, queries(0..3)).await.unwrap();
    recorder
}

#[tokio::test]
async fn acknowledged_strict_events_survive_a_crash_exactly_once() {
    let id = RecordingId::new();

    // Run A: 3 strict statements, then 2 more; the log is copied after each
    // acknowledgement, as a crash at that moment would leave it.
    let a = Dir::new();
    let recorder = three_strict_statements(&a, id).await;
    let log_after_3 = a.path.join("after-3.wal");
    copy(&a.wal(), &log_after_3);
    // A batched event between strict ones is carried by the next record.
    recorder.send(RecorderMsg::Events(id, queries(3..4))).await;
    recorder.record_durably(id, queries(4..5)).await.unwrap();
    let log_after_5 = a.path.join("after-5.wal");
    copy(&a.wal(), &log_after_5);
    let status = recorder.status().await.unwrap();
    assert_eq!(status.log_appends, 2);
    assert_eq!(status.commits, 0, "strict statements did not wait for redb");
    assert!(status.log_bytes > 0);
    // A fold into redb empties the log.
    recorder.flush().await;
    assert_eq!(recorder.status().await.unwrap().log_bytes, 0);
    recorder.shutdown().await;

    // Crash with nothing in redb: the log alone recovers all five.
    let b = Dir::new();
    copy(&log_after_5, &b.wal());
    let (sql, outcome, verdict) = recovered(&b, id).await;
    assert_eq!(sql, expected(5));
    assert_eq!(outcome, Some(Outcome::Interrupted));
    assert!(verdict.is_ok(), "{verdict}");
    // A start empties the file once it has replayed it: whole records a
    // crash left past a torn one are never scanned, and must not be found
    // by a later scan.
    assert_eq!(std::fs::metadata(b.wal()).unwrap().len(), 0, "log emptied");
    // The replay marked the log folded: another restart adds nothing.
    let (sql, _, verdict) = recovered(&b, id).await;
    assert_eq!(sql, expected(5));
    assert!(verdict.is_ok(), "{verdict}");

    // Crash after redb already folded everything: nothing is doubled.
    let c = Dir::new();
    copy(&a.store(), &c.store());
    copy(&a.key_path(), &c.path.join("key"));
    copy(&log_after_5, &c.wal());
    let (sql, _, verdict) = recovered(&c, id).await;
    assert_eq!(sql, expected(5));
    assert!(verdict.is_ok(), "{verdict}");

    // Crash when redb held the first three only: the log adds the rest.
    let d = Dir::new();
    let recorder = d.start();
    recorder
        .send(RecorderMsg::Header(Box::new(header(id))))
        .await;
    recorder.send(RecorderMsg::Events(id, queries(0..3))).await;
    recorder.shutdown().await;
    copy(&log_after_5, &d.wal());
    let (sql, _, verdict) = recovered(&d, id).await;
    assert_eq!(sql, expected(5));
    assert!(verdict.is_ok(), "{verdict}");

    // A log cut in the middle of its second record gives back the first.
    let e = Dir::new();
    let bytes = std::fs::read(&log_after_5).unwrap();
    let first = std::fs::metadata(&log_after_3).unwrap().len() as usize;
    std::fs::write(e.wal(), &bytes[..first + (bytes.len() - first) / 2]).unwrap();
    let (sql, _, verdict) = recovered(&e, id).await;
    assert_eq!(sql, expected(3));
    assert!(verdict.is_ok(), "{verdict}");
}

impl Dir {
    fn key_path(&self) -> PathBuf {
        self.path.join("key")
    }
}

/// The log is written in place, so a folded generation's records stay in
/// the file. Replaying them on a later start would bring back a recording
/// purged since: sealed, removed, and then resurrected from the log.
#[tokio::test]
async fn folded_log_records_do_not_bring_back_a_purged_recording() {
    let id = RecordingId::new();
    let a = Dir::new();
    let recorder = three_strict_statements(&a, id).await;
    recorder
        .send(RecorderMsg::Close {
            id,
            outcome: Outcome::Closed,
            reason: None,
            at: 200,
        })
        .await;
    recorder.flush().await;
    let criteria = Criteria {
        ended_before: Some(i64::MAX),
        max_bytes: None,
    };
    let purge = recorder.purge(criteria, "test".into()).await.unwrap();
    assert_eq!(purge.sessions, vec![id]);
    recorder.shutdown().await;
    let log = std::fs::read(a.wal()).unwrap();
    let needle = b"insert into ledger values (2)";
    assert!(
        log.windows(needle.len()).any(|w| w == needle),
        "the folded records are still in the file"
    );

    // A restart, clean or not, finds them and must leave them be.
    a.start().shutdown().await;
    let store = RecordingStore::open_read_only(&a.store()).unwrap();
    assert!(store.header(id).is_err(), "the purged recording came back");
    assert!(store.sessions().unwrap().is_empty());
}

/// A log written by the first format (no generations) and left by a crash
/// before an upgrade: its acknowledged events still reach the store.
#[tokio::test]
async fn a_log_from_before_generations_is_replayed() {
    use sha2::{Digest, Sha256};
    let id = RecordingId::new();
    let dir = Dir::new();
    let mut log = Vec::new();
    for (seq, sql) in expected(3).into_iter().enumerate() {
        let record = serde_json::json!({
            "header": header(id),
            "events": [gatehouse_actors::recording::Event {
                seq: seq as u64,
                at: 100,
                dir: Direction::Client,
                kind: EventKind::Query { sql },
            }],
        });
        let payload = serde_json::to_vec(&record).unwrap();
        log.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        log.extend_from_slice(&Sha256::digest(&payload)[..8]);
        log.extend_from_slice(&payload);
    }
    std::fs::write(dir.wal(), &log).unwrap();
    let (sql, outcome, verdict) = recovered(&dir, id).await;
    assert_eq!(sql, expected(3));
    assert_eq!(outcome, Some(Outcome::Interrupted));
    assert!(verdict.is_ok(), "{verdict}");
    // Replayed once: a second start adds nothing.
    let (sql, _, _) = recovered(&dir, id).await;
    assert_eq!(sql, expected(3));
}
