//! Replaying a terminal: recorded output fed to a VT100 emulator on a
//! clock the operator controls.
//!
//! The recording is a list of [`TermFrame`]s (output bytes, resizes) at
//! their recorded times. Playing advances a clock at 1×, 2×, 8× or as
//! fast as frames can be drawn, and feeds every frame up to the clock to
//! the emulator. Seeking must not replay a long session from its start, so
//! the player keeps keyframes — a copy of the emulated screen every
//! [`KEYFRAME_BYTES`] of output — built in one pass when the recording is
//! loaded: a seek restores the nearest keyframe before the target and
//! feeds at most that many bytes.

use std::num::NonZeroU16;
use std::time::Duration;

use gatehouse_actors::recording::EventKind;

/// Output fed between keyframes: seeking costs at most this much
/// emulation (well under a millisecond), and keyframes cost one screen
/// copy per this much output.
pub const KEYFRAME_BYTES: usize = 64 << 10;

/// At most this many keyframes per recording (each is a copy of a screen
/// of up to 500×200 cells): a long recording spaces them further apart.
pub const MAX_KEYFRAMES: usize = 64;

/// What a resize costs to replay, counted like output bytes.
const RESIZE_COST: usize = 4 << 10;

fn cost(data: &TermData) -> usize {
    match data {
        TermData::Output(b) => b.len(),
        TermData::Resize { .. } => RESIZE_COST,
    }
}

/// Output fed per tick at maximum speed, so a huge recording still draws
/// while it plays.
const MAX_SPEED_BYTES_PER_TICK: usize = 256 << 10;

/// One recorded moment of a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermData {
    Output(Vec<u8>),
    Resize { cols: u16, rows: u16 },
}

/// Picks an SSH session's terminal out of its events: the channel that
/// most recently asked for a pseudo-terminal is the terminal (its output
/// as the agent's terminal drew it, its window changes) — so a throwaway
/// terminal opened first cannot hide the one the agent works in — until
/// it closes; without one, the output of every channel is shown, with
/// bare line feeds made CRLF as a terminal's `onlcr` would (a command
/// run without a terminal writes `\n`). Input (stdin) is never shown: the
/// terminal echoes what the agent typed when it should, and a password
/// typed with echo off stays off the screen. Query and admin sessions
/// carry no terminal data and replay as timelines.
#[derive(Debug, Clone, Default)]
pub struct TermSource {
    pty: Option<u32>,
    /// The previous byte shown from a channel without a terminal was CR.
    after_cr: bool,
}

impl TermSource {
    pub fn new() -> TermSource {
        TermSource::default()
    }

    /// What `kind` does to the terminal, if anything.
    pub fn data(&mut self, kind: &EventKind) -> Option<TermData> {
        match kind {
            EventKind::SshPty {
                channel,
                cols,
                rows,
                ..
            } => {
                self.pty = Some(*channel);
                Some(resize(*cols, *rows))
            }
            EventKind::SshChannelClose { channel, .. } if self.pty == Some(*channel) => {
                self.pty = None;
                None
            }
            EventKind::SshResize {
                channel,
                cols,
                rows,
            } if self.pty == Some(*channel) => Some(resize(*cols, *rows)),
            EventKind::SshData {
                channel,
                stream,
                data,
            } if stream != "stdin" => match self.pty {
                Some(c) if c == *channel => Some(TermData::Output(data.as_bytes().to_vec())),
                Some(_) => None,
                None => Some(TermData::Output(self.crlf(data.as_bytes()))),
            },
            _ => None,
        }
    }

    fn crlf(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
        for &b in bytes {
            if b == b'\n' && !self.after_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.after_cr = b == b'\r';
        }
        out
    }
}

/// The largest terminal the console emulates: the agent chooses the size
/// it records, and an emulated screen costs memory per cell (the gateway
/// reads command lines off screens no larger than this either).
pub const MAX_COLS: u16 = 500;
pub const MAX_ROWS: u16 = 200;

/// A window size as recorded (SSH carries u32), cut to what the console
/// emulates.
fn resize(cols: u32, rows: u32) -> TermData {
    let fit = |n: u32, max: u16| u16::try_from(n).unwrap_or(max).clamp(1, max);
    TermData::Resize {
        cols: fit(cols, MAX_COLS),
        rows: fit(rows, MAX_ROWS),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermFrame {
    /// Unix µs.
    pub at: i64,
    pub data: TermData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    X1,
    X2,
    X8,
    Max,
}

impl Speed {
    pub fn label(self) -> &'static str {
        match self {
            Speed::X1 => "1x",
            Speed::X2 => "2x",
            Speed::X8 => "8x",
            Speed::Max => "max",
        }
    }

    fn faster(self) -> Speed {
        match self {
            Speed::X1 => Speed::X2,
            Speed::X2 => Speed::X8,
            Speed::X8 | Speed::Max => Speed::Max,
        }
    }

    fn slower(self) -> Speed {
        match self {
            Speed::Max => Speed::X8,
            Speed::X8 => Speed::X2,
            Speed::X2 | Speed::X1 => Speed::X1,
        }
    }

    fn factor(self) -> u32 {
        match self {
            Speed::X1 => 1,
            Speed::X2 => 2,
            Speed::X8 => 8,
            Speed::Max => 0,
        }
    }
}

struct Keyframe {
    /// Frames before this index are in `screen`.
    next: usize,
    screen: vt100::Screen,
}

pub struct Player {
    frames: Vec<TermFrame>,
    start: i64,
    end: i64,
    initial: (u16, u16),
    keyframes: Vec<Keyframe>,
    parser: vt100::Parser,
    /// The next frame to feed.
    next: usize,
    /// Playback position: µs since `start`.
    position: i64,
    speed: Speed,
    paused: bool,
}

fn dim(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

fn parser(cols: u16, rows: u16) -> vt100::Parser {
    vt100::Parser::new(dim(rows), dim(cols), 0)
}

fn feed(parser: &mut vt100::Parser, data: &TermData) {
    match data {
        TermData::Output(bytes) => parser.process(bytes),
        TermData::Resize { cols, rows } => parser.screen_mut().set_size(dim(*rows), dim(*cols)),
    }
}

impl Player {
    /// A player for `frames` (in recorded order) on a terminal that
    /// started `cols`×`rows`, positioned at the start, playing at 1×.
    pub fn new(frames: Vec<TermFrame>, start: i64, cols: u16, rows: u16) -> Player {
        let end = frames.last().map_or(start, |f| f.at.max(start));
        let mut emulator = parser(cols, rows);
        let mut keyframes = vec![Keyframe {
            next: 0,
            screen: emulator.screen().clone(),
        }];
        let total: usize = frames.iter().map(|f| cost(&f.data)).sum();
        let spacing = KEYFRAME_BYTES.max(total / MAX_KEYFRAMES + 1);
        let mut since = 0usize;
        for (i, f) in frames.iter().enumerate() {
            feed(&mut emulator, &f.data);
            since += cost(&f.data);
            if since >= spacing {
                keyframes.push(Keyframe {
                    next: i + 1,
                    screen: emulator.screen().clone(),
                });
                since = 0;
            }
        }
        Player {
            frames,
            start,
            end,
            initial: (cols, rows),
            keyframes,
            parser: parser(cols, rows),
            next: 0,
            position: 0,
            speed: Speed::X1,
            paused: false,
        }
    }

    pub fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// µs since the start of the recording.
    pub fn position(&self) -> i64 {
        self.position
    }

    pub fn duration(&self) -> i64 {
        self.end - self.start
    }

    pub fn speed(&self) -> Speed {
        self.speed
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn finished(&self) -> bool {
        self.next >= self.frames.len()
    }

    pub fn keyframes(&self) -> usize {
        self.keyframes.len()
    }

    /// Whether ticks move anything (the driver ticks faster then).
    pub fn playing(&self) -> bool {
        !self.paused && !self.finished()
    }

    pub fn toggle_pause(&mut self) {
        self.paused = !self.paused;
    }

    pub fn faster(&mut self) {
        self.speed = self.speed.faster();
    }

    pub fn slower(&mut self) {
        self.speed = self.speed.slower();
    }

    /// Let `elapsed` real time pass.
    pub fn tick(&mut self, elapsed: Duration) {
        if !self.playing() {
            return;
        }
        if self.speed == Speed::Max {
            let mut fed = 0;
            while fed < MAX_SPEED_BYTES_PER_TICK && self.next < self.frames.len() {
                let f = &self.frames[self.next];
                fed += match &f.data {
                    TermData::Output(b) => b.len().max(1),
                    TermData::Resize { .. } => 1,
                };
                feed(&mut self.parser, &f.data);
                self.position = f.at - self.start;
                self.next += 1;
            }
            return;
        }
        let advance = elapsed.as_micros() as i64 * i64::from(self.speed.factor());
        self.position = (self.position + advance).min(self.duration());
        self.feed_until(self.position);
    }

    fn feed_until(&mut self, position: i64) {
        while let Some(f) = self.frames.get(self.next) {
            if f.at - self.start > position {
                break;
            }
            feed(&mut self.parser, &f.data);
            self.next += 1;
        }
    }

    /// Jump to `position` µs from the start: the nearest keyframe before
    /// it, then the frames in between.
    pub fn seek_to(&mut self, position: i64) {
        let position = position.clamp(0, self.duration());
        // Frames at or before the target are shown.
        let upto = self
            .frames
            .partition_point(|f| f.at - self.start <= position);
        let k = self
            .keyframes
            .iter()
            .rev()
            .find(|k| k.next <= upto)
            .unwrap_or(&self.keyframes[0]);
        // Back, or forward past a keyframe: start from the keyframe.
        if upto < self.next || k.next > self.next {
            let (cols, rows) = self.initial;
            let mut fresh = parser(cols, rows);
            *fresh.screen_mut() = k.screen.clone();
            self.parser = fresh;
            self.next = k.next;
        }
        self.position = position;
        self.feed_until(position);
    }

    pub fn seek_by(&mut self, delta: Duration, forward: bool) {
        let d = delta.as_micros() as i64;
        let target = if forward {
            self.position.saturating_add(d)
        } else {
            self.position.saturating_sub(d)
        };
        self.seek_to(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_actors::recording::SshBytes;

    fn data(channel: u32, stream: &str, bytes: &[u8]) -> EventKind {
        EventKind::SshData {
            channel,
            stream: stream.into(),
            data: SshBytes::from_bytes(bytes),
        }
    }

    fn pty(channel: u32, cols: u32, rows: u32) -> EventKind {
        EventKind::SshPty {
            channel,
            term: "xterm".into(),
            cols,
            rows,
        }
    }

    #[test]
    fn the_first_terminal_channel_is_the_terminal() {
        let mut src = TermSource::new();
        // Before any terminal: every channel's output, LF made CRLF once.
        assert_eq!(
            src.data(&data(0, "stdout", b"a\nb\r\nc")),
            Some(TermData::Output(b"a\r\nb\r\nc".to_vec()))
        );
        assert_eq!(src.data(&data(0, "stdin", b"secret\n")), None);
        assert_eq!(
            src.data(&pty(3, 100, 30)),
            Some(TermData::Resize {
                cols: 100,
                rows: 30
            })
        );
        // From then on only channel 3, raw.
        assert_eq!(
            src.data(&data(3, "stdout", b"x\ny")),
            Some(TermData::Output(b"x\ny".to_vec()))
        );
        assert_eq!(src.data(&data(1, "stdout", b"other")), None);
        assert_eq!(src.data(&data(3, "stdin", b"typed")), None);
        // A newer terminal takes over; the older one's output is not
        // drawn into it.
        assert_eq!(
            src.data(&pty(4, 80, 24)),
            Some(TermData::Resize { cols: 80, rows: 24 })
        );
        assert_eq!(src.data(&data(3, "stdout", b"old")), None);
        assert_eq!(
            src.data(&data(4, "stdout", b"new")),
            Some(TermData::Output(b"new".to_vec()))
        );
        // Once it closes, every channel's output shows again.
        src.data(&EventKind::SshChannelClose {
            channel: 4,
            bytes_in: 0,
            bytes_out: 0,
        });
        assert_eq!(
            src.data(&data(1, "stdout", b"x\n")),
            Some(TermData::Output(b"x\r\n".to_vec()))
        );
    }

    #[test]
    fn resizes_cannot_make_the_player_keep_a_screen_each() {
        // An agent may send window changes without end; each keyframe is
        // a screen copy, so their number stays bounded.
        let frames: Vec<TermFrame> = (0..20_000)
            .map(|i| TermFrame {
                at: 1_000_000 + i,
                data: TermData::Resize {
                    cols: 500 - (i % 2) as u16,
                    rows: 200,
                },
            })
            .collect();
        let p = Player::new(frames, 1_000_000, 80, 24);
        assert!(p.keyframes() <= MAX_KEYFRAMES + 1, "{}", p.keyframes());
    }

    #[test]
    fn a_recorded_size_is_cut_to_what_the_console_emulates() {
        let mut src = TermSource::new();
        assert_eq!(
            src.data(&pty(0, u32::MAX, 0)),
            Some(TermData::Resize {
                cols: MAX_COLS,
                rows: 1
            })
        );
        assert_eq!(
            src.data(&EventKind::SshResize {
                channel: 0,
                cols: 70_000,
                rows: 201
            }),
            Some(TermData::Resize {
                cols: MAX_COLS,
                rows: MAX_ROWS
            })
        );
    }

    /// A long synthetic session: a line of output every 100 ms, the screen
    /// cleared every 50 lines, a resize in the middle.
    fn session(lines: usize) -> Vec<TermFrame> {
        let mut frames = Vec::new();
        for i in 0..lines {
            let at = 1_000_000 + i as i64 * 100_000;
            if i % 50 == 0 {
                frames.push(TermFrame {
                    at,
                    data: TermData::Output(b"\x1b[H\x1b[2J".to_vec()),
                });
            }
            if i == lines / 2 {
                frames.push(TermFrame {
                    at,
                    data: TermData::Resize {
                        cols: 100,
                        rows: 30,
                    },
                });
            }
            frames.push(TermFrame {
                at,
                data: TermData::Output(
                    format!("\x1b[1mline\x1b[0m {i:05} {}\r\n", "x".repeat(40)).into_bytes(),
                ),
            });
        }
        frames
    }

    fn contents(p: &Player) -> String {
        p.screen().contents()
    }

    #[test]
    fn seeking_shows_what_playing_to_the_same_moment_shows() {
        let frames = session(20_000);
        let mut seeker = Player::new(frames.clone(), 1_000_000, 80, 24);
        assert!(seeker.keyframes() > 10, "{}", seeker.keyframes());
        for target_s in [1_999, 300, 1_000, 1_500, 2] {
            let target = target_s * 1_000_000 + 50_000;
            // Played from the start, at 8x in 100 ms ticks.
            let mut played = Player::new(frames.clone(), 1_000_000, 80, 24);
            played.faster();
            played.faster();
            while played.position() < target {
                let left = (target - played.position()) / 8;
                played.tick(Duration::from_micros(left.clamp(1, 100_000) as u64));
            }
            seeker.seek_to(target);
            assert_eq!(contents(&seeker), contents(&played), "at {target_s} s");
            assert_eq!(seeker.screen().size(), played.screen().size());
            assert!(contents(&seeker).contains(&format!("line {:05}", target_s * 10)));
        }
    }

    #[test]
    fn speeds_pause_and_the_end() {
        let mut p = Player::new(session(100), 1_000_000, 80, 24);
        p.tick(Duration::from_secs(1));
        assert_eq!(p.position(), 1_000_000);
        assert!(contents(&p).contains("line 00010"));
        assert!(!contents(&p).contains("line 00011"));
        p.toggle_pause();
        p.tick(Duration::from_secs(5));
        assert_eq!(p.position(), 1_000_000);
        p.toggle_pause();
        p.faster();
        assert_eq!(p.speed(), Speed::X2);
        p.tick(Duration::from_secs(1));
        assert_eq!(p.position(), 3_000_000);
        p.faster();
        p.faster();
        assert_eq!(p.speed().label(), "max");
        while !p.finished() {
            p.tick(Duration::from_millis(10));
        }
        assert!(contents(&p).contains("line 00099"));
        assert!(!p.playing());
        p.seek_by(Duration::from_secs(5), false);
        assert!(contents(&p).contains("line 00049"));
        p.slower();
        assert_eq!(p.speed(), Speed::X8);
    }
}
