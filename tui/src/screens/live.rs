//! The live view: one session as it happens. A query session scrolls its
//! statements (outcome, time taken, rows, masking) and shows the selected
//! one in full; a terminal session shows the agent's terminal, emulated
//! from its output. New events arrive from the daemon's feed; the view
//! follows them until the operator scrolls back (End follows again).

use gatehouse_actors::recording::{Event, RecordingId, SessionHeader, clean};
use gatehouse_actors::registry::SessionSummary;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{bytes, clock, duration, step, steps};
use crate::app::App;
use crate::keys::Key;
use crate::pane::{TerminalPane, clipped};
use crate::player::{TermData, TermSource};
use crate::timeline::Timeline;

/// Statements kept in the live view; older ones scroll away (the
/// recording has them all).
pub const LIVE_STEPS: usize = 2000;

pub struct LiveState {
    pub summary: SessionSummary,
    pub header: Option<SessionHeader>,
    pub timeline: Timeline,
    /// Keep the newest statement selected as events arrive.
    pub follow: bool,
    pub selected: usize,
    /// The agent's terminal, once the session shows it has one.
    pub terminal: Option<vt100::Parser>,
    source: TermSource,
    /// Show the list of commands instead of the terminal (`t`).
    pub commands: bool,
    /// The history arrived (until then: "loading").
    pub loaded: bool,
}

impl LiveState {
    pub fn new(summary: SessionSummary) -> LiveState {
        LiveState {
            summary,
            header: None,
            timeline: Timeline::new(LIVE_STEPS),
            follow: true,
            selected: 0,
            terminal: None,
            source: TermSource::new(),
            commands: false,
            loaded: false,
        }
    }

    pub fn started(&mut self, header: Option<SessionHeader>, history: Vec<Event>) {
        self.header = header;
        self.loaded = true;
        for e in &history {
            self.event(e);
        }
    }

    pub fn event(&mut self, e: &Event) {
        if let Some(data) = self.source.data(&e.kind) {
            let term = self.terminal.get_or_insert_with(|| {
                vt100::Parser::new(vt100::Parser::DEFAULT_ROWS, vt100::Parser::DEFAULT_COLS, 0)
            });
            match data {
                TermData::Output(b) => term.process(&b),
                TermData::Resize { cols, rows } => term.screen_mut().set_size(
                    std::num::NonZeroU16::new(rows).unwrap_or(std::num::NonZeroU16::MIN),
                    std::num::NonZeroU16::new(cols).unwrap_or(std::num::NonZeroU16::MIN),
                ),
            }
        }
        self.timeline.push(e);
        if self.follow {
            self.selected = self.timeline.len().saturating_sub(1);
        }
    }

    /// The session to kill from here, if it is still live.
    pub fn killable(&self) -> Option<(RecordingId, String)> {
        self.summary
            .stats
            .state
            .is_live()
            .then(|| (self.summary.id, super::sessions::label(&self.summary)))
    }

    /// Whether the terminal is on screen (the session has one and the
    /// operator did not switch to its commands).
    pub fn showing_terminal(&self) -> bool {
        self.terminal.is_some() && !self.commands
    }

    pub fn handle(&mut self, key: Key) {
        if key == Key::Char('t') && self.terminal.is_some() {
            self.commands = !self.commands;
            return;
        }
        if matches!(key, Key::End | Key::Char('G')) {
            self.follow = true;
            self.selected = self.timeline.len().saturating_sub(1);
            return;
        }
        if let Some(i) = step(Some(self.selected), self.timeline.len(), key, 10) {
            self.selected = i;
            self.follow = i + 1 >= self.timeline.len();
        }
    }

    pub fn render(&self, app: &App, area: Rect, buf: &mut Buffer) {
        let t = app.theme;
        let s = &self.summary;
        let [head, body] =
            Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(area);
        let st = &s.stats;
        let head_lines = vec![
            Line::from(vec![
                Span::styled(
                    format!(
                        "{} on {}  ",
                        clean(s.identity.as_deref().unwrap_or("-")),
                        clean(s.connection.as_deref().unwrap_or("-"))
                    ),
                    t.heading(),
                ),
                Span::styled(
                    st.state.label().to_owned(),
                    if st.state.is_live() {
                        t.good()
                    } else {
                        t.alert()
                    },
                ),
                Span::raw(if self.follow { "  (following)" } else { "" }),
            ]),
            Line::from(format!(
                "{} from {} since {} UTC ({}), {}, {} {}",
                s.protocol,
                clean(&s.client_addr),
                clock(s.started_at),
                duration(s.ended_at.unwrap_or(app.now) - s.started_at),
                bytes(st.from_client + st.to_client),
                st.statements,
                if s.protocol == "ssh" {
                    "commands"
                } else {
                    "statements"
                }
            )),
        ];
        ratatui::widgets::Paragraph::new(head_lines).render(head, buf);
        if let Some(term) = self.terminal.as_ref().filter(|_| !self.commands) {
            let screen = term.screen();
            TerminalPane {
                screen,
                theme: t,
                cursor: true,
            }
            .render(body, buf);
            if clipped(screen, body) {
                let (rows, cols) = screen.size();
                let note = format!(" (terminal {cols}x{rows}, partly shown)");
                buf.set_string(head.x + 40, head.y, note, t.waiting());
            }
            return;
        }
        if self.timeline.is_empty() {
            let text = if self.loaded {
                "No statement yet; new ones appear as they run."
            } else {
                "Loading the session..."
            };
            super::message(body, buf, text, t.quiet());
            return;
        }
        let [list, detail] = if self.follow {
            Layout::vertical([Constraint::Fill(1), Constraint::Length(0)]).areas(body)
        } else {
            Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(body)
        };
        steps::list(self.timeline.steps(), Some(self.selected), t, list, buf);
        if !self.follow
            && let Some(step) = self.timeline.steps().get(self.selected)
        {
            steps::detail(step, t, detail, buf);
        }
    }
}
