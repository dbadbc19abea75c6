//! Fill a recording store with many ended sessions, as the recorder
//! writes them, for measuring how consoles and listings cope with a large
//! store: `fill_store DATA_DIR COUNT [DAYS]` writes COUNT short PostgreSQL
//! sessions (a query, its result, an end; sealed) spread evenly over the
//! last DAYS days (default 30), with ids made at their start times.

use std::time::Instant;

use gatehouse_actors::recorder::{PendingEvent, Recorder, RecorderConfig, RecorderMsg, now_micros};
use gatehouse_actors::recording::{Direction, EventKind, Outcome, RecordingId, SessionHeader};
use gatehouse_actors::store::SigningKey;

fn id_at(micros: i64) -> RecordingId {
    let ms = (micros / 1000) as u64;
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
    RecordingId(uuid::Uuid::new_v7(ts))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(count)) = (args.get(1), args.get(2).and_then(|n| n.parse::<i64>().ok()))
    else {
        eprintln!("usage: fill_store DATA_DIR COUNT [DAYS]");
        std::process::exit(2);
    };
    let days: i64 = args.get(3).and_then(|d| d.parse().ok()).unwrap_or(30);
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).expect("creating the data directory");
    let key = SigningKey::load_or_create(&dir.join("recording-signing.key")).expect("signing key");
    let recorder = Recorder::start(&dir.join("recordings.redb"), RecorderConfig::default(), key)
        .expect("opening the store");
    let started = Instant::now();
    let span = days * 86_400_000_000;
    let first = now_micros() - span;
    let outcomes = [
        Outcome::Closed,
        Outcome::Closed,
        Outcome::Refused,
        Outcome::Terminated,
    ];
    for i in 0..count {
        let at = first + span / count * i;
        let id = id_at(at);
        let header = SessionHeader {
            id,
            protocol: "postgres".into(),
            started_at: at,
            ended_at: None,
            client_addr: format!("10.0.{}.{}:5432", i % 250, i % 199),
            client_user: Some(format!("bot-{}", i % 97)),
            connection: Some(format!("db-{}", i % 7)),
            identity: Some(format!("bot-{}", i % 97)),
            groups: vec!["ci".into()],
            outcome: None,
            reason: None,
            event_count: 0,
            ..SessionHeader::new(id, "postgres", at, String::new())
        };
        recorder.send(RecorderMsg::Header(Box::new(header))).await;
        let event = |dt: i64, kind| PendingEvent {
            at: at + dt,
            dir: Direction::Client,
            kind,
        };
        recorder
            .send(RecorderMsg::Events(
                id,
                vec![
                    event(
                        1000,
                        EventKind::Query {
                            sql: format!("select * from orders where id = {i}"),
                        },
                    ),
                    event(
                        2000,
                        EventKind::Complete {
                            tag: "SELECT 1".into(),
                            rows: 1,
                            rows_recorded: 1,
                        },
                    ),
                ],
            ))
            .await;
        recorder
            .send(RecorderMsg::Close {
                id,
                outcome: outcomes[(i % 4) as usize],
                reason: None,
                at: at + 3000,
            })
            .await;
    }
    recorder.flush().await;
    recorder.shutdown().await;
    println!(
        "wrote {count} sessions over {days} days in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
