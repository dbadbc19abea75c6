//! Replay of a recording. A query session is a timeline of statements
//! stepped with the arrows, each shown with its recorded results; a
//! terminal session plays in an emulated terminal at 1×, 2×, 8× or as fast
//! as it can draw (`space` pauses, `+`/`-` change speed, arrows seek); `t`
//! lists its commands (each exec and judged shell line), and Enter on one
//! plays on from the moment it ran.

use std::time::Duration;

use gatehouse_actors::recording::{Event, SessionHeader, clean};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{day_and_time, duration, step, steps};
use crate::app::App;
use crate::keys::Key;
use crate::pane::{TerminalPane, clipped};
use crate::player::{Player, TermFrame, TermSource};
use crate::timeline::Timeline;

/// Statements kept for a replay: the console loads at most this many
/// events anyway (see the daemon's replay limit).
const REPLAY_STEPS: usize = 1_000_000;

pub enum ReplayKind {
    Steps {
        timeline: Box<Timeline>,
        selected: usize,
    },
    Terminal(Box<Player>),
}

/// A terminal session's commands, listed over its terminal with `t`.
pub struct Commands {
    pub timeline: Box<Timeline>,
    pub selected: usize,
    /// The list is on screen instead of the terminal.
    pub shown: bool,
}

pub struct ReplayState {
    pub header: SessionHeader,
    pub kind: ReplayKind,
    /// For a terminal session: its commands (`t`).
    pub commands: Option<Commands>,
    /// The recording was longer than the console loads.
    pub truncated: bool,
    /// The verdict of `v`.
    pub verdict: Option<(bool, String)>,
}

impl ReplayState {
    pub fn new(header: SessionHeader, events: &[Event], truncated: bool) -> ReplayState {
        let mut source = TermSource::new();
        let frames: Vec<TermFrame> = events
            .iter()
            .filter_map(|e| {
                source
                    .data(&e.kind)
                    .map(|data| TermFrame { at: e.at, data })
            })
            .collect();
        let timeline = Box::new(Timeline::from_events(events, REPLAY_STEPS));
        let mut commands = None;
        let kind = if frames.is_empty() {
            ReplayKind::Steps {
                timeline,
                selected: 0,
            }
        } else {
            commands = Some(Commands {
                timeline,
                selected: 0,
                shown: false,
            });
            let (cols, rows) = (
                vt100::Parser::DEFAULT_COLS.get(),
                vt100::Parser::DEFAULT_ROWS.get(),
            );
            ReplayKind::Terminal(Box::new(Player::new(frames, header.started_at, cols, rows)))
        };
        ReplayState {
            header,
            kind,
            commands,
            truncated,
            verdict: None,
        }
    }

    fn listing(&self) -> bool {
        self.commands.as_ref().is_some_and(|c| c.shown)
    }

    pub fn playing(&self) -> bool {
        matches!(&self.kind, ReplayKind::Terminal(p) if p.playing())
    }

    pub fn tick(&mut self, elapsed: Duration) {
        if let ReplayKind::Terminal(p) = &mut self.kind {
            p.tick(elapsed);
        }
    }

    pub fn keys(&self) -> Vec<(&'static str, &'static str)> {
        match &self.kind {
            ReplayKind::Steps { .. } => {
                vec![("Left/Right", "step"), ("v", "verify"), ("q", "back")]
            }
            ReplayKind::Terminal(_) if self.listing() => vec![
                ("Up/Down", "move"),
                ("Enter", "play from here"),
                ("t", "terminal"),
                ("q", "back"),
            ],
            ReplayKind::Terminal(_) => {
                let mut keys = vec![("space", "pause"), ("+/-", "speed"), ("Left/Right", "seek")];
                if self.commands.is_some() {
                    keys.push(("t", "commands"));
                }
                keys.push(("q", "back"));
                keys
            }
        }
    }

    pub fn handle(&mut self, key: Key) {
        if let (ReplayKind::Terminal(p), Some(c)) = (&mut self.kind, &mut self.commands) {
            if key == Key::Char('t') {
                c.shown = !c.shown;
                return;
            }
            if c.shown {
                if key == Key::Enter {
                    if let Some(step) = c.timeline.steps().get(c.selected) {
                        p.seek_to(step.at - self.header.started_at);
                    }
                    c.shown = false;
                } else if let Some(i) = step(Some(c.selected), c.timeline.len(), key, 10) {
                    c.selected = i;
                }
                return;
            }
        }
        match &mut self.kind {
            ReplayKind::Steps { timeline, selected } => {
                let key = match key {
                    Key::Left => Key::Up,
                    Key::Right => Key::Down,
                    k => k,
                };
                if let Some(i) = step(Some(*selected), timeline.len(), key, 10) {
                    *selected = i;
                }
            }
            ReplayKind::Terminal(p) => match key {
                Key::Char(' ') => p.toggle_pause(),
                Key::Char('+') | Key::Char('=') => p.faster(),
                Key::Char('-') => p.slower(),
                Key::Left => p.seek_by(Duration::from_secs(5), false),
                Key::Right => p.seek_by(Duration::from_secs(5), true),
                Key::PageUp => p.seek_by(Duration::from_secs(60), false),
                Key::PageDown => p.seek_by(Duration::from_secs(60), true),
                Key::Home => p.seek_to(0),
                Key::End => p.seek_to(p.duration()),
                _ => {}
            },
        }
    }

    pub fn render(&self, app: &App, area: Rect, buf: &mut Buffer) {
        let t = app.theme;
        let h = &self.header;
        let [head, body] =
            Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(area);
        let title = Line::from(vec![
            Span::styled(
                format!(
                    "{} on {}  ",
                    clean(h.identity.as_deref().unwrap_or("-")),
                    clean(h.connection.as_deref().unwrap_or("-"))
                ),
                t.heading(),
            ),
            Span::raw(format!(
                "{}, {} UTC, {}",
                h.protocol,
                day_and_time(h.started_at),
                h.outcome.map_or("live", |o| o.as_str())
            )),
        ]);
        let mut spans = vec![match &self.kind {
            ReplayKind::Steps { timeline, selected } => Span::raw(format!(
                "statement {} of {}",
                (*selected + 1).min(timeline.len()),
                timeline.len()
            )),
            ReplayKind::Terminal(p) => Span::raw(format!(
                "{} {} / {}{}{}",
                match (p.finished(), p.paused()) {
                    (true, _) => "at the end,",
                    (false, true) => "paused",
                    (false, false) => "playing",
                },
                duration(p.position()),
                duration(p.duration()),
                if p.paused() { "" } else { " at " },
                if p.paused() { "" } else { p.speed().label() },
            )),
        }];
        if self.truncated {
            spans.push(Span::styled(" (first part only)", t.waiting()));
        }
        if let ReplayKind::Terminal(p) = &self.kind
            && clipped(p.screen(), body)
        {
            let (rows, cols) = p.screen().size();
            spans.push(Span::styled(
                format!(" (terminal {cols}x{rows}, partly shown)"),
                t.waiting(),
            ));
        }
        if let Some((ok, v)) = &self.verdict {
            spans.push(Span::styled(
                format!("  verify: {v}"),
                if *ok { t.good() } else { t.alert() },
            ));
        }
        ratatui::widgets::Paragraph::new(vec![title, Line::from(spans)]).render(head, buf);
        match &self.kind {
            ReplayKind::Steps { timeline, selected } => list_and_detail(
                timeline,
                *selected,
                40,
                "Nothing was recorded in this session.",
                app,
                body,
                buf,
            ),
            ReplayKind::Terminal(_) if self.listing() => {
                if let Some(c) = &self.commands {
                    list_and_detail(
                        &c.timeline,
                        c.selected,
                        60,
                        "No command was recorded in this session.",
                        app,
                        body,
                        buf,
                    );
                }
            }
            ReplayKind::Terminal(p) => {
                TerminalPane {
                    screen: p.screen(),
                    theme: t,
                    cursor: true,
                }
                .render(body, buf);
            }
        }
    }
}

/// Steps listed over `list_percent` of `body`, the selected one in full
/// below; `empty` when there are none.
fn list_and_detail(
    timeline: &Timeline,
    selected: usize,
    list_percent: u16,
    empty: &str,
    app: &App,
    body: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    if timeline.is_empty() {
        super::message(body, buf, empty, t.quiet());
        return;
    }
    let [list, detail] =
        Layout::vertical([Constraint::Percentage(list_percent), Constraint::Fill(1)]).areas(body);
    steps::list(timeline.steps(), Some(selected), t, list, buf);
    if let Some(step) = timeline.steps().get(selected) {
        steps::detail(step, t, detail, buf);
    }
}
