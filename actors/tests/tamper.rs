//! Tamper evidence: a recording written by the recorder verifies; changing
//! one byte of a chunk, dropping the tail, or re-sealing with another key
//! is reported with the session and the first bad position.

use std::path::Path;

use gatehouse_actors::recorder::{
    PendingEvent, Recorder, RecorderConfig, RecorderHandle, RecorderMsg,
};
use gatehouse_actors::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};
use gatehouse_actors::store::schema::{CHUNKS, SEALS};
use gatehouse_actors::store::{RecordingStore, Seal, SigningKey, Verdict};
use redb::ReadableTable;

fn header(id: RecordingId) -> SessionHeader {
    SessionHeader {
        client_user: Some("bot".into()),
        connection: Some("db".into()),
        identity: Some("bot".into()),
        ..SessionHeader::new(id, "postgres", 1, "127.0.0.1:1".into())
    }
}

/// Record one session in three chunks (a flush after each batch) and end it.
async fn record(recorder: &RecorderHandle) -> RecordingId {
    let id = RecordingId::new();
    recorder
        .send(RecorderMsg::Header(Box::new(header(id))))
        .await;
    for i in 0..3 {
        let events = (0..5)
            .map(|j| PendingEvent {
                at: 10 + i * 5 + j,
                dir: Direction::Client,
                kind: EventKind::Query {
                    sql: format!("select {i}, {j}"),
                },
            })
            .collect();
        recorder.send(RecorderMsg::Events(id, events)).await;
        recorder.flush().await;
    }
    recorder
        .send(RecorderMsg::Close {
            id,
            outcome: Outcome::Closed,
            reason: None,
            at: 99,
        })
        .await;
    recorder.flush().await;
    id
}

fn rewrite(db: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(db).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

#[tokio::test]
async fn verify_detects_alteration_truncation_and_foreign_seals() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.redb");
    let key = SigningKey::load_or_create(&dir.path().join("key")).unwrap();
    let public = key.public_key();
    let recorder = Recorder::start(&db, RecorderConfig::default(), key).unwrap();
    let (a, b, c) = (
        record(&recorder).await,
        record(&recorder).await,
        record(&recorder).await,
    );
    recorder.shutdown().await;

    {
        let store = RecordingStore::open_read_only(&db).unwrap();
        for id in [a, b, c] {
            assert_eq!(
                store.verify(id, &public).unwrap(),
                Verdict::Intact {
                    chunks: 4,
                    events: 16
                }
            );
        }
    }

    // One byte flipped inside chunk 1 of `a`: the chain breaks there.
    rewrite(&db, |txn| {
        let mut chunks = txn.open_table(CHUNKS).unwrap();
        let key = (a.0.as_u128(), 1u32);
        let mut bytes = chunks.get(key).unwrap().unwrap().value().to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        chunks.insert(key, bytes.as_slice()).unwrap();
    });
    // The last chunk of `b` removed: the seal counts more than remain.
    rewrite(&db, |txn| {
        let mut chunks = txn.open_table(CHUNKS).unwrap();
        chunks.remove((b.0.as_u128(), 3u32)).unwrap();
    });
    // `c` re-sealed by someone else's key over the same, intact chain.
    rewrite(&db, |txn| {
        let mut seals = txn.open_table(SEALS).unwrap();
        let mut seal: Seal =
            serde_json::from_slice(seals.get(c.0.as_u128()).unwrap().unwrap().value()).unwrap();
        let other = tempfile::tempdir().unwrap();
        SigningKey::load_or_create(&other.path().join("k"))
            .unwrap()
            .sign(&mut seal);
        seals
            .insert(c.0.as_u128(), serde_json::to_vec(&seal).unwrap().as_slice())
            .unwrap();
    });

    let store = RecordingStore::open_read_only(&db).unwrap();
    match store.verify(a, &public).unwrap() {
        Verdict::Altered { chunk: 1, .. } => {}
        other => panic!("flipped byte in chunk 1 reported as {other:?}"),
    }
    assert_eq!(
        store.verify(b, &public).unwrap(),
        Verdict::Truncated {
            sealed: 4,
            found: 3
        }
    );
    assert_eq!(store.verify(c, &public).unwrap(), Verdict::BadSignature);
}

#[tokio::test]
async fn sessions_left_open_are_sealed_interrupted_at_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.redb");
    let key_path = dir.path().join("key");
    let recorder = Recorder::start(
        &db,
        RecorderConfig::default(),
        SigningKey::load_or_create(&key_path).unwrap(),
    )
    .unwrap();
    let id = RecordingId::new();
    recorder
        .send(RecorderMsg::Header(Box::new(header(id))))
        .await;
    recorder
        .send(RecorderMsg::Events(
            id,
            vec![PendingEvent {
                at: 5,
                dir: Direction::Client,
                kind: EventKind::Query {
                    sql: "select 1".into(),
                },
            }],
        ))
        .await;
    recorder.flush().await;
    // Stop without closing the session, as a crash would leave it.
    recorder.shutdown().await;

    let key = SigningKey::load_or_create(&key_path).unwrap();
    let public = key.public_key();
    let recorder = Recorder::start(&db, RecorderConfig::default(), key).unwrap();
    recorder.shutdown().await;
    let store = RecordingStore::open_read_only(&db).unwrap();
    assert_eq!(
        store.header(id).unwrap().outcome,
        Some(Outcome::Interrupted)
    );
    assert_eq!(
        store.events(id).unwrap().len(),
        1,
        "durable events are kept"
    );
    assert_eq!(
        store.verify(id, &public).unwrap(),
        Verdict::Intact {
            chunks: 1,
            events: 1
        }
    );
}

/// An archive's members in order, as `(path, bytes)`.
fn members(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut tar = tar::Archive::new(zstd::Decoder::new(archive).unwrap());
    tar.entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

/// Pack members into an archive again.
fn pack(members: Vec<(String, Vec<u8>)>) -> Vec<u8> {
    let mut out = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap());
    for (path, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o444);
        header.set_cksum();
        out.append_data(&mut header, &path, data.as_slice())
            .unwrap();
    }
    out.into_inner().unwrap().finish().unwrap()
}

/// Rebuild an archive with `edit` applied to each member's bytes.
fn rewrite_archive(archive: &[u8], edit: impl Fn(&str, &mut Vec<u8>)) -> Vec<u8> {
    let mut all = members(archive);
    for (path, data) in &mut all {
        edit(path, data);
    }
    pack(all)
}

#[tokio::test]
async fn archives_verify_off_the_store_and_show_tampering() {
    use gatehouse_actors::store::archive::{verify_archive, write_archive};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recordings.redb");
    let key_path = dir.path().join("key");
    let key = SigningKey::load_or_create(&key_path).unwrap();
    let public = key.public_key();
    let recorder = Recorder::start(&db, RecorderConfig::default(), key).unwrap();
    let (a, b) = (record(&recorder).await, record(&recorder).await);
    recorder.shutdown().await;
    let store = RecordingStore::open_read_only(&db).unwrap();
    let mut archive = Vec::new();
    let key = SigningKey::load_or_create(&key_path).unwrap();
    write_archive(&store, &[a, b], &key, 1, &mut archive).unwrap();
    drop(store);
    std::fs::remove_file(&db).unwrap();

    let report = verify_archive(archive.as_slice(), &public).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.sessions.len(), 2);

    // A flipped byte in a chunk, with the manifest hash updated to match:
    // only the chain and the seal can tell.
    let chunk = format!("sessions/{a}/chunks/00000002.bin");
    let tampered = rewrite_archive(&archive, |path, data| {
        if path == chunk {
            let mid = data.len() / 2;
            data[mid] ^= 1;
        }
    });
    let tampered = fix_manifest(&tampered);
    let report = verify_archive(tampered.as_slice(), &public).unwrap();
    assert!(!report.is_ok());
    let (_, verdict) = report.sessions.iter().find(|(id, _)| *id == a).unwrap();
    assert!(
        matches!(verdict, Verdict::Altered { chunk: 2, .. }),
        "{verdict:?}"
    );
    assert!(
        report.problems.is_empty(),
        "manifest was made consistent: {:?}",
        report.problems
    );

    // The readable copy edited: caught even though it is not signed itself.
    let events = format!("sessions/{b}/events.jsonl");
    let edited = fix_manifest(&rewrite_archive(&archive, |path, data| {
        if path == events {
            *data = String::from_utf8(data.clone())
                .unwrap()
                .replace("select 1", "select 7")
                .into_bytes();
        }
    }));
    let report = verify_archive(edited.as_slice(), &public).unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("events.jsonl differs")),
        "{:?}",
        report.problems
    );

    // Someone else's key: the archive's own key does not match.
    let other = tempfile::tempdir().unwrap();
    let other = SigningKey::load_or_create(&other.path().join("k"))
        .unwrap()
        .public_key();
    let report = verify_archive(archive.as_slice(), &other).unwrap();
    assert!(!report.key_matches);
    assert!(!report.manifest_signed);
    assert!(!report.is_ok());

    // A whole session removed, manifest hashes recomputed: the manifest
    // signature no longer matches.
    let dropped = fix_manifest_without(&archive, &format!("sessions/{b}/"));
    let report = verify_archive(dropped.as_slice(), &public).unwrap();
    assert!(!report.manifest_signed);
    assert!(!report.is_ok());
}

/// Drop every member under `prefix` and fix the manifest to match.
fn fix_manifest_without(archive: &[u8], prefix: &str) -> Vec<u8> {
    let mut kept: Vec<_> = members(archive)
        .into_iter()
        .filter(|(path, _)| !path.starts_with(prefix))
        .collect();
    for (path, data) in &mut kept {
        if path == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(data).unwrap();
            let files = m["files"].as_object_mut().unwrap();
            files.retain(|k, _| !k.starts_with(prefix));
            *data = serde_json::to_vec(&m).unwrap();
        }
    }
    pack(kept)
}

/// Recompute the manifest's hashes after an edit, as a careful forger would.
fn fix_manifest(archive: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let hashes: std::collections::BTreeMap<String, String> = members(archive)
        .into_iter()
        .map(|(path, data)| (path, hex::encode(Sha256::digest(&data))))
        .collect();
    rewrite_archive(archive, |path, data| {
        if path == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(data).unwrap();
            for (p, h) in &hashes {
                if p != "manifest.json" {
                    m["files"][p] = serde_json::Value::String(h.clone());
                }
            }
            *data = serde_json::to_vec(&m).unwrap();
        }
    })
}
