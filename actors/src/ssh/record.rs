//! What an SSH channel records, and how its bytes become events.
//!
//! Stream bytes are recorded as text when they are UTF-8. SSH packets cut
//! the stream anywhere, also inside a multi-byte character, so the last
//! incomplete character of a packet is held back (at most three bytes per
//! stream) and recorded with the next packet: a terminal's output stays
//! text in the recording however the target's writes were split.

use crate::recorder::{PendingEvent, RecorderHandle, RecorderMsg, now_micros};
use std::sync::Arc;

use crate::recording::{Direction, EventKind, RecordingId, SshBytes};
use crate::registry::SessionStats;

/// A channel's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdin,
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdin => "stdin",
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn direction(self) -> Direction {
        match self {
            Stream::Stdin => Direction::Client,
            Stream::Stdout | Stream::Stderr => Direction::Target,
        }
    }
}

/// The recording side of one channel.
pub struct ChannelTap {
    recorder: RecorderHandle,
    session: RecordingId,
    pub channel: u32,
    /// Record stdin/stdout at all (SFTP channels record operations instead).
    pub record_streams: bool,
    carry: [Vec<u8>; 3],
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The session's counters, which consoles show.
    stats: Arc<SessionStats>,
}

impl ChannelTap {
    pub fn new(
        recorder: RecorderHandle,
        session: RecordingId,
        channel: u32,
        stats: Arc<SessionStats>,
    ) -> Self {
        ChannelTap {
            recorder,
            session,
            channel,
            record_streams: true,
            carry: Default::default(),
            bytes_in: 0,
            bytes_out: 0,
            stats,
        }
    }

    /// Count `data` and turn it into an event (or nothing, when it is all
    /// held back as an incomplete character).
    pub fn data(&mut self, stream: Stream, data: &[u8]) -> Option<PendingEvent> {
        match stream {
            Stream::Stdin => {
                self.bytes_in += data.len() as u64;
                self.stats.add_from_client(data.len());
            }
            _ => {
                self.bytes_out += data.len() as u64;
                self.stats.add_to_client(data.len());
            }
        }
        if !self.record_streams {
            return None;
        }
        let carry = &mut self.carry[stream.index()];
        let joined;
        let bytes: &[u8] = if carry.is_empty() {
            data
        } else {
            carry.extend_from_slice(data);
            joined = std::mem::take(carry);
            &joined
        };
        let (now, later) = split_utf8(bytes);
        let event = (!now.is_empty()).then(|| PendingEvent {
            at: now_micros(),
            dir: stream.direction(),
            kind: EventKind::SshData {
                channel: self.channel,
                stream: stream.name().into(),
                data: SshBytes::from_bytes(now),
            },
        });
        *carry = later.to_vec();
        event
    }

    /// Whatever is still held back (the channel is closing).
    pub fn drain(&mut self) -> Vec<PendingEvent> {
        let mut out = Vec::new();
        for stream in [Stream::Stdin, Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.carry[stream.index()]);
            if !rest.is_empty() {
                out.push(PendingEvent {
                    at: now_micros(),
                    dir: stream.direction(),
                    kind: EventKind::SshData {
                        channel: self.channel,
                        stream: stream.name().into(),
                        data: SshBytes::from_bytes(&rest),
                    },
                });
            }
        }
        out
    }

    pub fn event(&self, dir: Direction, kind: EventKind) -> PendingEvent {
        PendingEvent {
            at: now_micros(),
            dir,
            kind,
        }
    }

    pub async fn send(&self, events: Vec<PendingEvent>) {
        if !events.is_empty() {
            self.recorder
                .send(RecorderMsg::Events(self.session, events))
                .await;
        }
    }

    /// Record and wait until durable (strict recording): the command the
    /// events describe runs only after this succeeds.
    pub async fn durable(&self, events: Vec<PendingEvent>) -> Result<(), String> {
        self.recorder.record_durably(self.session, events).await
    }

    pub async fn note(&self, dir: Direction, kind: EventKind) {
        self.send(vec![self.event(dir, kind)]).await;
    }
}

/// Split into the longest prefix that ends on a character boundary and an
/// incomplete character at the end (at most three bytes). Invalid bytes
/// inside stay in the prefix (it is then recorded as base64).
fn split_utf8(bytes: &[u8]) -> (&[u8], &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(_) => (bytes, &[]),
        Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() <= 3 => {
            bytes.split_at(e.valid_up_to())
        }
        Err(_) => {
            // Invalid somewhere: still hold back a trailing incomplete
            // character so the next packet's text is not mangled.
            let tail_start = bytes.len().saturating_sub(3);
            let tail = &bytes[tail_start..];
            match tail.iter().rposition(|b| b & 0xC0 == 0xC0) {
                Some(lead) => {
                    let at = tail_start + lead;
                    let need = match bytes[at] {
                        b if b >= 0xF0 => 4,
                        b if b >= 0xE0 => 3,
                        _ => 2,
                    };
                    if bytes.len() - at < need {
                        bytes.split_at(at)
                    } else {
                        (bytes, &[])
                    }
                }
                None => (bytes, &[]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_packets_stay_text() {
        let text = "héllo → wörld";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            let (now, later) = split_utf8(a);
            let mut joined = later.to_vec();
            joined.extend_from_slice(b);
            assert!(std::str::from_utf8(now).is_ok(), "cut {cut}");
            assert_eq!(std::str::from_utf8(&joined).ok(), Some(&text[now.len()..]));
        }
    }

    #[test]
    fn binary_is_base64_and_round_trips() {
        let data = [0u8, 159, 146, 150, 255];
        let json = serde_json::to_value(SshBytes::from_bytes(&data)).unwrap();
        assert!(json["base64"].is_string(), "{json}");
        let back: SshBytes = serde_json::from_value(json).unwrap();
        assert_eq!(back.as_bytes(), data);
    }
}
