//! asciicast v2 (the asciinema file format) for replaying a recording in a
//! terminal player.
//!
//! A query session has no terminal of its own, so it is replayed as the
//! transcript `recordings show` prints: one line per event, at the moment
//! the event happened. Every line goes through [`format_event`], which
//! escapes control characters, so nothing a client or target sent can drive
//! the auditor's terminal. Long pauses are shortened by the player
//! (`idle_time_limit`); the real times stay in each line.
//!
//! Format: <https://docs.asciinema.org/manual/asciicast/v2/>.

use std::io::Write;

use super::event::{Event, SessionHeader};
use super::text::{clean, format_event, format_header};

/// Columns of the replay terminal: wide enough for a transcript line's
/// prefix and a short statement.
const WIDTH: u32 = 160;
const HEIGHT: u32 = 40;
/// Seconds of silence the player shows at most (the file keeps real times).
const IDLE_TIME_LIMIT: f64 = 2.0;

/// Write `header` and `events` as an asciicast v2 file.
pub fn write_asciicast(
    header: &SessionHeader,
    events: &[Event],
    mut out: impl Write,
) -> std::io::Result<()> {
    let title = clean(&format!(
        "gatehouse {} session {} ({} on {})",
        header.protocol,
        header.id,
        header.identity.as_deref().unwrap_or("-"),
        header.connection.as_deref().unwrap_or("-"),
    ));
    let head = serde_json::json!({
        "version": 2,
        "width": WIDTH,
        "height": HEIGHT,
        "timestamp": header.started_at.div_euclid(1_000_000),
        "idle_time_limit": IDLE_TIME_LIMIT,
        "title": title,
        "env": { "TERM": "xterm-256color" },
    });
    serde_json::to_writer(&mut out, &head)?;
    out.write_all(b"\n")?;
    frame(&mut out, 0.0, &format!("{}\r\n", format_header(header)))?;
    // Times are offsets from the session's start and never go backwards,
    // as players require.
    let mut last = 0.0_f64;
    for e in events {
        let t = ((e.at - header.started_at) as f64 / 1e6).max(last);
        last = t;
        frame(&mut out, t, &format!("{}\r\n", format_event(e)))?;
    }
    Ok(())
}

fn frame(out: &mut impl Write, t: f64, text: &str) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut *out,
        &serde_json::json!([(t * 1e6).round() / 1e6, "o", text]),
    )?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Direction, EventKind, RecordingId};

    fn header(started_at: i64) -> SessionHeader {
        SessionHeader {
            id: RecordingId::new(),
            protocol: "postgres".into(),
            started_at,
            ended_at: None,
            client_addr: "127.0.0.1:5000".into(),
            client_user: None,
            connection: Some("orders".into()),
            identity: Some("ci-bot".into()),
            groups: vec![],
            outcome: None,
            reason: None,
            event_count: 0,
        }
    }

    fn event(seq: u64, at: i64, kind: EventKind) -> Event {
        Event {
            seq,
            at,
            dir: Direction::Client,
            kind,
        }
    }

    #[test]
    fn a_cast_has_a_v2_header_and_monotonic_output_frames() {
        let h = header(1_700_000_000_000_000);
        let events = [
            event(
                1,
                h.started_at + 1_500_000,
                EventKind::Query {
                    sql: "select 1".into(),
                },
            ),
            // Out of order in time (clock step): must not go backwards.
            event(
                2,
                h.started_at + 1_000_000,
                EventKind::Query {
                    sql: "select \u{1b}[2J2".into(),
                },
            ),
        ];
        let mut out = Vec::new();
        write_asciicast(&h, &events, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(head["version"], 2);
        assert_eq!(head["timestamp"], 1_700_000_000);
        let frames: Vec<serde_json::Value> =
            lines.map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(frames.len(), 3);
        let times: Vec<f64> = frames.iter().map(|f| f[0].as_f64().unwrap()).collect();
        assert_eq!(times, [0.0, 1.5, 1.5]);
        assert!(frames.iter().all(|f| f[1] == "o"));
        assert!(frames[1][2].as_str().unwrap().contains("query: select 1"));
        // The escape sequence arrives as visible text, not as a control.
        let third = frames[2][2].as_str().unwrap();
        assert!(!third.contains('\u{1b}') && third.contains("\\u{1b}[2J"));
    }
}
