//! A console watching a live session gets every event the recorder
//! numbers, in order, after what was already durable — and a console that
//! stops reading costs the session nothing but dropped (counted) events.

use gatehouse_actors::feed::feed;
use gatehouse_actors::recorder::{
    PendingEvent, Recorder, RecorderConfig, RecorderHandle, RecorderMsg,
};
use gatehouse_actors::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};
use gatehouse_actors::store::{RecordingStore, SigningKey};

fn header(id: RecordingId) -> SessionHeader {
    SessionHeader {
        id,
        protocol: "postgres".into(),
        started_at: 1,
        ended_at: None,
        client_addr: "127.0.0.1:1".into(),
        client_user: None,
        connection: Some("db".into()),
        identity: Some("bot".into()),
        groups: vec![],
        outcome: None,
        reason: None,
        event_count: 0,
        ..SessionHeader::new(id, "postgres", 1, String::new())
    }
}

fn queries(range: std::ops::Range<u32>) -> Vec<PendingEvent> {
    range
        .map(|i| PendingEvent {
            at: 10 + i as i64,
            dir: Direction::Client,
            kind: EventKind::Query {
                sql: format!("select {i}"),
            },
        })
        .collect()
}

/// A recorder on a fresh store in `dir`, with one session open.
async fn open_session(dir: &std::path::Path) -> (std::path::PathBuf, RecorderHandle, RecordingId) {
    let db = dir.join("recordings.redb");
    let key = SigningKey::load_or_create(&dir.join("key")).unwrap();
    let recorder = Recorder::start(&db, RecorderConfig::default(), key).unwrap();
    let id = RecordingId::new();
    recorder
        .send(RecorderMsg::Header(Box::new(header(id))))
        .await;
    (db, recorder, id)
}

#[tokio::test]
async fn a_watcher_continues_where_the_store_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (db, recorder, id) = open_session(dir.path()).await;
    recorder.send(RecorderMsg::Events(id, queries(0..5))).await;
    recorder.flush().await;
    recorder.send(RecorderMsg::Events(id, queries(5..7))).await;

    let (tx, mut rx) = feed(64);
    let durable = recorder.watch(id, tx).await.expect("the session is live");
    let stored = RecordingStore::open_read_only(&db)
        .unwrap()
        .events_tail(id, 1000)
        .unwrap();
    assert!(
        stored.len() as u64 >= durable,
        "durable events are in the store"
    );

    recorder.send(RecorderMsg::Events(id, queries(7..9))).await;
    recorder
        .send(RecorderMsg::Close {
            id,
            outcome: Outcome::Closed,
            reason: None,
            at: 99,
        })
        .await;
    recorder.flush().await;
    let mut seqs: Vec<u64> = stored
        .iter()
        .map(|e| e.seq)
        .filter(|s| *s < durable)
        .collect();
    let mut last = None;
    while let Some(e) = rx.rx.recv().await {
        seqs.push(e.seq);
        last = Some(e.kind);
    }
    assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "no gap, no repeat");
    assert!(matches!(last, Some(EventKind::End { .. })));
    assert_eq!(rx.dropped(), 0);
    assert_eq!(
        recorder.watch(id, feed(1).0).await,
        None,
        "ended: read the store"
    );
    recorder.shutdown().await;
}

#[tokio::test]
async fn a_console_that_stops_reading_only_loses_its_own_events() {
    let dir = tempfile::tempdir().unwrap();
    let (db, recorder, id) = open_session(dir.path()).await;
    let (tx, rx) = feed(4);
    recorder.watch(id, tx).await.unwrap();
    for i in 0..10 {
        recorder
            .send(RecorderMsg::Events(id, queries(i * 100..i * 100 + 100)))
            .await;
    }
    recorder.flush().await;
    assert_eq!(rx.dropped(), 996);
    let store = RecordingStore::open_read_only(&db).unwrap();
    assert_eq!(
        store.events(id).unwrap().len(),
        1000,
        "the recording is whole"
    );
    recorder.shutdown().await;
}
