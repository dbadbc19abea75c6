//! Human-readable rendering of headers and events for `recordings show`.
//!
//! Everything printed that a client or target controlled (names, SQL,
//! values, messages) goes through [`clean`], so escape sequences and
//! newlines cannot forge or hide lines on an operator's terminal.

use super::event::{Event, EventKind, SessionHeader};

/// Control characters as visible escapes (`\u{1b}`); newlines too, so one
/// event stays one line. Invisible formatting characters (bidirectional
/// overrides and isolates, zero-width characters) too, so a line cannot
/// show text in another order than it was recorded.
pub fn clean(s: &str) -> String {
    if !s.chars().any(hidden) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if hidden(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Characters that would change how the line around them looks.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width, LRM, RLM
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}' // word joiner .. bidi isolates
            | '\u{feff}')
}

/// Unix microseconds as RFC 3339 UTC with millisecond precision.
pub fn format_time(micros: i64) -> String {
    let nanos = i128::from(micros) * 1000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => micros.to_string(),
    }
}

/// One line per session, as `recordings list` prints it.
pub fn format_header(h: &SessionHeader) -> String {
    clean(&format!(
        "{}  {}  {:<8} {:<10} {:<16} {:<20} {}",
        h.id,
        format_time(h.started_at),
        h.protocol,
        h.outcome.map_or("live", |o| o.as_str()),
        h.connection.as_deref().unwrap_or("-"),
        h.identity.as_deref().unwrap_or("-"),
        h.client_addr,
    ))
}

/// One line per event, as `recordings show` prints it.
pub fn format_event(e: &Event) -> String {
    clean(&format!(
        "{:>6} {} {:<7} {}",
        e.seq,
        format_time(e.at),
        format!("{:?}", e.dir).to_lowercase(),
        describe(&e.kind)
    ))
}

/// What an event says, in words (not yet cleaned for a terminal).
pub fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::Connected { target } => format!("connected to {target}"),
        EventKind::Query { sql } => format!("query: {sql}"),
        EventKind::Parse { statement, sql } => format!("parse {statement:?}: {sql}"),
        EventKind::Bind {
            portal,
            statement,
            params,
        } => format!(
            "bind {portal:?} to {statement:?}: [{}]",
            params
                .iter()
                .map(|p| p.as_deref().map_or("NULL".to_owned(), |v| format!("{v:?}")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventKind::Execute { portal, max_rows } => {
            format!("execute {portal:?} max_rows={max_rows}")
        }
        EventKind::FunctionCall { oid, args } => format!(
            "function call oid {oid}: [{}]",
            args.iter()
                .map(|a| a.as_deref().map_or("NULL".to_owned(), |v| format!("{v:?}")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventKind::Opaque { tag, len } => format!("relayed message '{tag}' ({len} bytes)"),
        EventKind::Columns { names } => format!("columns: {}", names.join(" | ")),
        EventKind::Row { values } => format!(
            "row: {}",
            values
                .iter()
                .map(|v| v.as_deref().unwrap_or("NULL"))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        EventKind::Complete {
            tag,
            rows,
            rows_recorded,
        } if rows_recorded < rows => {
            format!("complete: {tag} ({rows} rows, first {rows_recorded} recorded)")
        }
        EventKind::Complete { tag, rows, .. } => format!("complete: {tag} ({rows} rows)"),
        EventKind::Error {
            severity,
            code,
            message,
        } => format!("error {severity} {code}: {message}"),
        EventKind::Notice {
            severity,
            code,
            message,
        } => format!("notice {severity} {code}: {message}"),
        EventKind::Notification { channel, payload } => {
            format!("notification on {channel}: {payload}")
        }
        EventKind::Copy {
            direction,
            bytes,
            messages,
        } => format!("copy from {direction:?}: {bytes} bytes in {messages} messages"),
        EventKind::CopyData {
            direction,
            data,
            cut,
        } => match cut {
            0 => format!("copy data from {direction:?}: {}", clean(data)),
            _ => format!(
                "copy data from {direction:?}: {} …[{cut} more bytes not recorded]",
                clean(data)
            ),
        },
        EventKind::Cancel => "cancel requested".to_owned(),
        EventKind::Blocked { rule, reason } => {
            format!("blocked by {}: {}", clean(rule), clean(reason))
        }
        EventKind::ApprovalRequested { id, rule, deadline } => format!(
            "approval {id} requested (rule {}, deadline {})",
            clean(rule),
            format_time(*deadline)
        ),
        EventKind::ApprovalDecided {
            id,
            decision,
            by,
            reason,
        } => match reason {
            Some(r) => format!("approval {id} {decision} by {}: {}", clean(by), clean(r)),
            None => format!("approval {id} {decision} by {}", clean(by)),
        },
        EventKind::Masked { counts } => format!(
            "masked: {}",
            counts
                .iter()
                .map(|(rule, what, n)| format!("{}/{}×{n}", clean(rule), clean(what)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventKind::AdminCommand { command } => format!("command: {command}"),
        EventKind::AdminExit { status, bytes } => {
            format!("command exited with status {status} after {bytes} bytes")
        }
        EventKind::Sftp {
            op,
            path,
            outcome,
            bytes,
        } => {
            if *bytes > 0 {
                format!("sftp {op} {path}: {outcome} ({bytes} bytes)")
            } else {
                format!("sftp {op} {path}: {outcome}")
            }
        }
        EventKind::SqlBytes {
            statement,
            encoding,
            sql,
        } => {
            let what = match statement {
                Some(name) => format!("parse {name:?}"),
                None => "query".to_owned(),
            };
            format!(
                "{what} ({} bytes in {encoding}, not decoded): \\x{}",
                sql.0.len(),
                hex::encode(&sql.0)
            )
        }
        EventKind::SshChannelOpen {
            channel,
            channel_type,
        } => format!("channel {channel}: open {channel_type}"),
        EventKind::SshPty {
            channel,
            term,
            cols,
            rows,
        } => format!("channel {channel}: pty {term} {cols}x{rows}"),
        EventKind::SshResize {
            channel,
            cols,
            rows,
        } => format!("channel {channel}: resize {cols}x{rows}"),
        EventKind::SshEnv {
            channel,
            name,
            value,
            accepted,
        } => match (accepted, value) {
            (true, Some(v)) => format!("channel {channel}: env {name}={v}"),
            _ => format!("channel {channel}: env {name} refused (not in the allowlist)"),
        },
        EventKind::SshStart {
            channel,
            request,
            command,
        } => {
            if command.is_empty() {
                format!("channel {channel}: {request}")
            } else {
                format!("channel {channel}: {request} {command}")
            }
        }
        EventKind::SshData {
            channel,
            stream,
            data,
        } => match data.as_text() {
            Some(t) => format!("channel {channel}: {stream} {t:?}"),
            None => format!("channel {channel}: {stream} {} bytes (binary)", data.len()),
        },
        EventKind::SshLine { channel, line } => format!("channel {channel}: command line: {line}"),
        EventKind::SshSignal { channel, signal } => format!("channel {channel}: signal {signal}"),
        EventKind::SshExit {
            channel,
            status,
            signal,
        } => match (status, signal) {
            (Some(s), _) => format!("channel {channel}: exit status {s}"),
            (None, Some(sig)) => format!("channel {channel}: killed by signal {sig}"),
            (None, None) => format!("channel {channel}: exited"),
        },
        EventKind::SshChannelClose {
            channel,
            bytes_in,
            bytes_out,
        } => format!("channel {channel}: closed ({bytes_in} bytes in, {bytes_out} bytes out)"),
        EventKind::FileOp {
            channel,
            protocol,
            op,
            path,
            to,
            flags,
            bytes,
            sha256,
            outcome,
        } => {
            let mut line = format!("channel {channel}: {protocol} {op} {path}");
            if let Some(to) = to {
                line.push_str(&format!(" -> {to}"));
            }
            if let Some(flags) = flags {
                line.push_str(&format!(" [{flags}]"));
            }
            if *bytes > 0 {
                line.push_str(&format!(" {bytes} bytes"));
            }
            if let Some(h) = sha256 {
                line.push_str(&format!(" sha256 {h}"));
            }
            line.push_str(&format!(": {outcome}"));
            line
        }
        EventKind::PortForward {
            channel,
            forward: kind,
            from,
            to,
            bytes_in,
            bytes_out,
            outcome,
        } => format!(
            "{}{kind} {from} -> {to}: {outcome} ({bytes_in} bytes in, {bytes_out} bytes out)",
            channel.map_or(String::new(), |c| format!("channel {c}: "))
        ),
        EventKind::End { outcome, reason } => match reason {
            Some(r) => format!("end: {} ({r})", outcome.as_str()),
            None => format!("end: {}", outcome.as_str()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Direction;

    #[test]
    fn client_text_cannot_forge_terminal_lines() {
        let e = Event {
            seq: 1,
            at: 0,
            dir: Direction::Client,
            kind: EventKind::Query {
                sql: "select 1;\n     2 2026-01-01 client  query: drop table x\u{1b}[2K".into(),
            },
        };
        let line = format_event(&e);
        assert_eq!(line.lines().count(), 1);
        assert!(!line.contains('\u{1b}'));
        assert!(line.contains("\\n") && line.contains("\\u{1b}"));
    }

    #[test]
    fn bidirectional_overrides_are_shown_not_obeyed() {
        // "recordings list" shown as if harmless, while RLO reorders it.
        let line = clean("recordings list \u{202e}tsil\u{2066}x\u{200b}");
        assert!(
            !line.contains('\u{202e}') && !line.contains('\u{2066}') && !line.contains('\u{200b}')
        );
        assert!(line.contains("\\u{202e}"), "{line}");
        assert_eq!(clean("naïve café"), "naïve café");
    }
}
