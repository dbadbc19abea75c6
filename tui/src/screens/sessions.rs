//! Screen 1, Sessions: every live session and the recently ended ones,
//! with who, where, how long, how much, and its state. Enter opens the
//! live view, `K` kills (after `y`).

use std::collections::VecDeque;

use gatehouse_actors::recording::{RecordingId, clean};
use gatehouse_actors::registry::{RECENT, SessionState, SessionSummary, StatsSnapshot};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::widgets::{Cell, Row, StatefulWidget, Table, TableState};

use super::{bytes, clip, clock, duration, matches, message, step};
use crate::app::App;
use crate::keys::Key;

#[derive(Debug, Default)]
pub struct SessionsState {
    pub live: Vec<SessionSummary>,
    /// Newest last.
    pub recent: VecDeque<SessionSummary>,
    pub selected: Option<RecordingId>,
    pub filter: String,
}

/// How an operator names a session in prompts.
pub fn label(s: &SessionSummary) -> String {
    format!(
        "{} on {} ({})",
        clean(s.identity.as_deref().unwrap_or("-")),
        clean(s.connection.as_deref().unwrap_or("-")),
        &s.id.to_string()[..8]
    )
}

/// Protocol names as short as a narrow column needs.
pub fn protocol(name: &str) -> String {
    match name {
        "postgres" => "pg".into(),
        other => clip(other, 5),
    }
}

/// The cells of a row, as shown (and as the filter sees them).
fn cells(s: &SessionSummary, now: i64, wide: bool) -> Vec<String> {
    let st = &s.stats;
    let mut cells = vec![
        clean(s.identity.as_deref().unwrap_or("-")),
        clean(s.connection.as_deref().unwrap_or("-")),
        protocol(&s.protocol),
        clock(s.started_at),
        duration(s.ended_at.unwrap_or(now) - s.started_at),
        bytes(st.from_client + st.to_client),
        st.statements.to_string(),
        st.state.label().to_owned(),
    ];
    if wide {
        cells.push(clean(&s.client_addr));
    }
    cells
}

impl SessionsState {
    /// Live sessions (newest first), then ended ones (latest end first),
    /// as the filter leaves them.
    pub fn rows(&self, now: i64) -> Vec<&SessionSummary> {
        let mut live: Vec<_> = self.live.iter().collect();
        live.sort_by_key(|s| std::cmp::Reverse((s.started_at, s.id)));
        live.into_iter()
            .chain(self.recent.iter().rev())
            .filter(|s| matches(&self.filter, &cells(s, now, true)))
            .collect()
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    fn index(&self, rows: &[&SessionSummary]) -> Option<usize> {
        let i = self
            .selected
            .and_then(|id| rows.iter().position(|s| s.id == id));
        i.or((!rows.is_empty()).then_some(0))
    }

    pub fn selected_row(&self, now: i64) -> Option<&SessionSummary> {
        let rows = self.rows(now);
        self.index(&rows).map(|i| rows[i])
    }

    pub fn navigate(&mut self, key: Key, page: usize, now: i64) {
        let rows = self.rows(now);
        if let Some(i) = step(self.index(&rows), rows.len(), key, page) {
            self.selected = Some(rows[i].id);
        }
    }

    pub fn replace(&mut self, live: Vec<SessionSummary>, recent: Vec<SessionSummary>) {
        self.live = live;
        self.recent = recent.into_iter().collect();
    }

    pub fn started(&mut self, s: SessionSummary) {
        self.live.retain(|l| l.id != s.id);
        self.live.push(s);
    }

    pub fn changed(
        &mut self,
        id: RecordingId,
        identity: Option<String>,
        connection: Option<String>,
    ) {
        if let Some(s) = self.live.iter_mut().find(|s| s.id == id) {
            s.identity = identity;
            s.connection = connection;
        }
    }

    pub fn stats(&mut self, stats: Vec<(RecordingId, StatsSnapshot)>) {
        for (id, st) in stats {
            if let Some(s) = self.live.iter_mut().find(|s| s.id == id) {
                s.stats = st;
            }
        }
    }

    pub fn ended(&mut self, s: SessionSummary) {
        self.live.retain(|l| l.id != s.id);
        self.recent.retain(|r| r.id != s.id);
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(s);
    }

    pub fn render(&self, app: &App, area: Rect, buf: &mut Buffer) {
        let t = app.theme;
        let rows = self.rows(app.now);
        if rows.is_empty() {
            let text = if self.filter.is_empty() {
                "No sessions yet. Agents connecting through the gateway appear here."
            } else {
                "No session matches the filter (Esc on / clears it)."
            };
            message(area, buf, text, t.quiet());
            return;
        }
        let wide = area.width >= 110;
        let mut widths = vec![
            Constraint::Fill(3),
            Constraint::Fill(2),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(11),
        ];
        let mut heading = vec![
            "IDENTITY",
            "CONNECTION",
            "PROTO",
            "STARTED",
            "DURATION",
            "BYTES",
            "STMTS",
            "STATE",
        ];
        if wide {
            widths.push(Constraint::Length(22));
            heading.push("CLIENT");
        }
        let body = rows.iter().map(|s| {
            let style = match s.stats.state {
                SessionState::WaitingForApproval => t.waiting(),
                SessionState::Ended(_) => t.quiet(),
                _ => Style::new(),
            };
            let cells = cells(s, app.now, wide);
            Row::new(cells.into_iter().enumerate().map(|(i, c)| {
                // Numbers read best right-aligned.
                if (4..7).contains(&i) {
                    Cell::from(ratatui::text::Line::from(clip(&c, 8)).right_aligned())
                } else {
                    Cell::from(c)
                }
            }))
            .style(style)
        });
        let table = Table::new(body, widths)
            .header(Row::new(heading).style(t.heading()))
            .column_spacing(1)
            .row_highlight_style(t.selected());
        let mut state = TableState::default().with_selected(self.index(&rows));
        StatefulWidget::render(table, area, buf, &mut state);
    }
}
