//! asciicast v2 (the asciinema file format) for replaying a recording in a
//! terminal player.
//!
//! An SSH session is replayed as its terminal's real output (see
//! `write_terminal`). A query session has no terminal of its own, so it is replayed as the
//! transcript `recordings show` prints: one line per event, at the moment
//! the event happened. Every line goes through [`format_event`], which
//! escapes control characters, so nothing a client or target sent can drive
//! the auditor's terminal. Long pauses are shortened by the player
//! (`idle_time_limit`); the real times stay in each line.
//!
//! Format: <https://docs.asciinema.org/manual/asciicast/v2/>.

use std::io::Write;

use super::event::{Event, EventKind, SessionHeader};
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
    out: impl Write,
) -> std::io::Result<()> {
    if header.protocol == "ssh" {
        write_terminal(header, events, out)
    } else {
        write_transcript(header, events, out)
    }
}

/// An SSH session replays as what its terminal really showed: the
/// target's output (stdout and stderr, as masked for the agent) at the
/// moment it was relayed, sized by the first pty request and resized as
/// the agent's terminal was. Sessions without a terminal (exec, scp)
/// replay their output the same way.
fn write_terminal(
    header: &SessionHeader,
    events: &[Event],
    mut out: impl Write,
) -> std::io::Result<()> {
    let (width, height) = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::SshPty { cols, rows, .. } => Some((*cols, *rows)),
            _ => None,
        })
        .unwrap_or((80, 24));
    write_head(&mut out, header, width, height)?;
    let mut last = 0.0_f64;
    // Output split inside a UTF-8 character is joined before it is
    // written, so players see whole characters.
    let mut pending: Vec<u8> = Vec::new();
    for e in events {
        let t = ((e.at - header.started_at) as f64 / 1e6).max(last);
        match &e.kind {
            EventKind::SshData { stream, data, .. } if stream != "stdin" => {
                pending.extend_from_slice(data.as_bytes());
                let valid = match std::str::from_utf8(&pending) {
                    Ok(_) => pending.len(),
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    Err(_) => pending.len(),
                };
                if valid > 0 {
                    let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
                    pending.drain(..valid);
                    last = t;
                    frame(&mut out, t, "o", &text)?;
                }
            }
            EventKind::SshResize { cols, rows, .. } => {
                last = t;
                frame(&mut out, t, "r", &format!("{cols}x{rows}"))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn write_transcript(
    header: &SessionHeader,
    events: &[Event],
    mut out: impl Write,
) -> std::io::Result<()> {
    write_head(&mut out, header, WIDTH, HEIGHT)?;
    frame(
        &mut out,
        0.0,
        "o",
        &format!("{}\r\n", format_header(header)),
    )?;
    // Times are offsets from the session's start and never go backwards,
    // as players require.
    let mut last = 0.0_f64;
    for e in events {
        let t = ((e.at - header.started_at) as f64 / 1e6).max(last);
        last = t;
        frame(&mut out, t, "o", &format!("{}\r\n", format_event(e)))?;
    }
    Ok(())
}

/// The v2 header line: terminal size, start time, a title naming the
/// session.
fn write_head(
    out: &mut impl Write,
    header: &SessionHeader,
    width: u32,
    height: u32,
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
        "width": width,
        "height": height,
        "timestamp": header.started_at.div_euclid(1_000_000),
        "idle_time_limit": IDLE_TIME_LIMIT,
        "title": title,
        "env": { "TERM": "xterm-256color" },
    });
    serde_json::to_writer(&mut *out, &head)?;
    out.write_all(b"\n")
}

fn frame(out: &mut impl Write, t: f64, code: &str, text: &str) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut *out,
        &serde_json::json!([(t * 1e6).round() / 1e6, code, text]),
    )?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Direction, EventKind, RecordingId};

    fn header(started_at: i64) -> SessionHeader {
        SessionHeader {
            connection: Some("orders".into()),
            identity: Some("ci-bot".into()),
            ..SessionHeader::new(
                RecordingId::new(),
                "postgres",
                started_at,
                "127.0.0.1:5000".into(),
            )
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
    fn an_ssh_cast_is_the_real_output_with_characters_joined() {
        let mut h = header(1_700_000_000_000_000);
        h.protocol = "ssh".into();
        let data = |s: &[u8], stream: &str| EventKind::SshData {
            channel: 0,
            stream: stream.into(),
            data: crate::recording::SshBytes::from_bytes(s),
        };
        let arrow = "→".as_bytes();
        let events = [
            event(
                1,
                h.started_at,
                EventKind::SshPty {
                    channel: 0,
                    term: "xterm".into(),
                    cols: 100,
                    rows: 30,
                },
            ),
            event(2, h.started_at + 500_000, data(b"ls\r\n", "stdin")),
            event(
                3,
                h.started_at + 1_000_000,
                data(b"\x1b[1mhi\x1b[0m ", "stdout"),
            ),
            event(4, h.started_at + 1_100_000, data(&arrow[..1], "stdout")),
            event(5, h.started_at + 1_200_000, data(&arrow[1..], "stderr")),
            event(
                6,
                h.started_at + 2_000_000,
                EventKind::SshResize {
                    channel: 0,
                    cols: 120,
                    rows: 40,
                },
            ),
        ];
        let mut out = Vec::new();
        write_asciicast(&h, &events, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(
            (head["width"].as_u64(), head["height"].as_u64()),
            (Some(100), Some(30))
        );
        let frames: Vec<serde_json::Value> =
            lines.map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(frames.len(), 3, "{frames:?}");
        // Escape sequences reach the player as they were sent.
        assert_eq!(frames[0][2], "\u{1b}[1mhi\u{1b}[0m ");
        assert_eq!(frames[1][2], "→");
        assert_eq!(frames[1][0].as_f64(), Some(1.2));
        assert_eq!(frames[2][1], "r");
        assert_eq!(frames[2][2], "120x40");
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
