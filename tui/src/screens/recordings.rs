//! Screen 3, Recordings: every recorded session, newest first, a page at
//! a time (the store is read by key range, so a store of any size opens
//! at once). `/` filters by identity, connection, day, outcome (see
//! [`crate::protocol::RecordingFilter`]); Enter replays; `v` verifies the
//! chain and seal.

use std::collections::HashMap;

use gatehouse_actors::recording::{RecordingId, SessionHeader, clean};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Row, StatefulWidget, Table, TableState};

use super::{day_and_time, message, step};
use crate::app::App;
use crate::keys::Key;
use crate::protocol::Request;

/// Ask for the next page when the selection comes this close to the end.
const PREFETCH: usize = 20;

#[derive(Debug, Default)]
pub struct RecordingsState {
    pub headers: Vec<SessionHeader>,
    /// Where the next page starts, if there is one.
    pub next: Option<RecordingId>,
    /// The filter being typed (applied on Enter).
    pub filter: String,
    /// The filter the list was loaded with.
    pub applied: String,
    pub selected: usize,
    pub loaded: bool,
    pub loading: bool,
    /// Verdicts of `v`, shown in the SEAL column.
    pub verdicts: HashMap<RecordingId, (bool, String)>,
}

impl RecordingsState {
    /// Load the first page for the current filter.
    pub fn reload(&mut self) -> Vec<Request> {
        self.loading = true;
        self.applied = self.filter.clone();
        vec![Request::Recordings {
            filter: self.filter.clone(),
            before: None,
        }]
    }

    pub fn selected_header(&self) -> Option<&SessionHeader> {
        self.headers.get(self.selected)
    }

    pub fn navigate(&mut self, key: Key, page: usize) -> Vec<Request> {
        if let Some(i) = step(Some(self.selected), self.headers.len(), key, page) {
            self.selected = i;
        }
        match self.next {
            Some(before) if !self.loading && self.selected + PREFETCH >= self.headers.len() => {
                self.loading = true;
                vec![Request::Recordings {
                    filter: self.applied.clone(),
                    before: Some(before),
                }]
            }
            _ => Vec::new(),
        }
    }

    pub fn page(
        &mut self,
        filter: String,
        more: bool,
        headers: Vec<SessionHeader>,
        next: Option<RecordingId>,
    ) {
        if filter != self.applied {
            // An answer to a filter since replaced.
            return;
        }
        if more {
            self.headers.extend(headers);
        } else {
            self.headers = headers;
            self.selected = 0;
        }
        self.next = next;
        self.loaded = true;
        self.loading = false;
    }

    pub fn render(&self, app: &App, area: Rect, buf: &mut Buffer) {
        let t = app.theme;
        if self.headers.is_empty() {
            let text = match (self.loading, self.applied.is_empty()) {
                (true, _) => "Loading recordings...",
                (false, true) => "No recordings yet.",
                (false, false) => {
                    "No recording matches. Filter words: identity:NAME connection:NAME day:2026-11-26 outcome:terminated, or any text."
                }
            };
            message(area, buf, text, t.quiet());
            return;
        }
        let [list, foot] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(area);
        let wide = area.width >= 110;
        let body = self.headers.iter().map(|h| {
            let outcome = h.outcome.map_or("live", |o| o.as_str());
            let seal = match self.verdicts.get(&h.id) {
                Some((true, _)) => "ok",
                Some((false, v)) if v.starts_with("unsealed") => "unsealed",
                Some((false, _)) => "BAD",
                None => "-",
            };
            let mut cells = vec![
                day_and_time(h.started_at),
                clean(h.identity.as_deref().unwrap_or("-")),
                clean(h.connection.as_deref().unwrap_or("-")),
                outcome.to_owned(),
                h.event_count.to_string(),
                seal.to_owned(),
            ];
            if wide {
                cells.insert(3, h.protocol.clone());
                cells.push(h.id.to_string());
            }
            let style = match seal {
                "BAD" => t.alert(),
                _ if h.outcome.is_none() => t.good(),
                _ => ratatui::style::Style::new(),
            };
            Row::new(cells).style(style)
        });
        let mut widths = vec![
            Constraint::Length(16),
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Length(8),
        ];
        let mut heading = vec![
            "STARTED (UTC)",
            "IDENTITY",
            "CONNECTION",
            "OUTCOME",
            "EVENTS",
            "SEAL",
        ];
        if wide {
            widths.insert(3, Constraint::Length(9));
            heading.insert(3, "PROTOCOL");
            widths.push(Constraint::Length(36));
            heading.push("ID");
        }
        let table = Table::new(body, widths)
            .header(Row::new(heading).style(t.heading()))
            .column_spacing(1)
            .row_highlight_style(t.selected());
        let mut state = TableState::default().with_selected(Some(self.selected));
        StatefulWidget::render(table, list, buf, &mut state);
        let more = match (self.next.is_some(), self.loading) {
            (_, true) => "loading more...",
            (true, false) => "more below",
            (false, false) => "end of recordings",
        };
        message(
            foot,
            buf,
            &format!("{} shown, {more}", self.headers.len()),
            t.quiet(),
        );
    }
}
