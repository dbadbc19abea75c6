//! Screen 2, Approvals: statements held for an operator, oldest first,
//! with who asked, where, the rule and the time left. `a` approves the
//! selected request; `d` asks for a reason and denies. The selected
//! request's whole statement is shown below the queue.

use gatehouse_actors::approval::PendingApproval;
use gatehouse_actors::recording::clean;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};

use super::{clip, clock, duration, matches, message, step};
use crate::app::App;
use crate::keys::Key;

#[derive(Debug, Default)]
pub struct ApprovalsState {
    /// Oldest first.
    pub pending: Vec<PendingApproval>,
    pub selected: Option<String>,
    pub filter: String,
}

/// The banner raised on every screen when a request arrives.
pub fn banner_text(p: &PendingApproval) -> String {
    format!(
        "approval {} (press 2): {} on {}: {}",
        p.id,
        clean(&p.identity),
        clean(&p.connection),
        clip(&clean(&p.statement), 40)
    )
}

fn cells(p: &PendingApproval, now: i64) -> Vec<String> {
    vec![
        p.id.clone(),
        clean(&p.identity),
        clean(&p.connection),
        duration(p.deadline - now),
        clean(&p.rule),
        clean(&p.statement),
    ]
}

impl ApprovalsState {
    pub fn rows(&self, now: i64) -> Vec<&PendingApproval> {
        self.pending
            .iter()
            .filter(|p| matches(&self.filter, &cells(p, now)))
            .collect()
    }

    fn index(&self, rows: &[&PendingApproval]) -> Option<usize> {
        let i = self
            .selected
            .as_ref()
            .and_then(|id| rows.iter().position(|p| &p.id == id));
        i.or((!rows.is_empty()).then_some(0))
    }

    pub fn selected_request(&self) -> Option<&PendingApproval> {
        // The countdown does not change which rows match a filter on id,
        // who or what; any clock will do for the selection.
        let rows = self.rows(0);
        self.index(&rows).map(|i| rows[i])
    }

    pub fn navigate(&mut self, key: Key, page: usize, now: i64) {
        let rows = self.rows(now);
        if let Some(i) = step(self.index(&rows), rows.len(), key, page) {
            self.selected = Some(rows[i].id.clone());
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.pending.iter().any(|p| p.id == id)
    }

    pub fn replace(&mut self, pending: Vec<PendingApproval>) {
        self.pending = pending;
    }

    pub fn requested(&mut self, p: PendingApproval) {
        self.pending.retain(|q| q.id != p.id);
        self.pending.push(p);
        self.pending.sort_by_key(|p| p.requested_at);
    }

    /// Forget a decided or withdrawn request; true if it was here.
    pub fn gone(&mut self, id: &str) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| p.id != id);
        before != self.pending.len()
    }

    pub fn render(&self, app: &App, area: Rect, buf: &mut Buffer) {
        let t = app.theme;
        let rows = self.rows(app.now);
        if rows.is_empty() {
            let text = if self.filter.is_empty() {
                "No statement is waiting for approval. New requests ring the bell on any screen."
            } else {
                "No request matches the filter (Esc on / clears it)."
            };
            message(area, buf, text, t.quiet());
            return;
        }
        let [list, detail] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(7)]).areas(area);
        let selected = self.index(&rows);
        let body = rows.iter().map(|p| {
            let left = p.deadline - app.now;
            let mut cells = cells(p, app.now);
            cells[3] = if left > 0 {
                duration(left)
            } else {
                "expired".into()
            };
            Row::new(cells).style(if left < 60_000_000 {
                t.alert()
            } else {
                t.waiting()
            })
        });
        let table = Table::new(
            body,
            [
                Constraint::Length(8),
                Constraint::Fill(1),
                Constraint::Fill(1),
                Constraint::Length(7),
                Constraint::Length(10),
                Constraint::Fill(3),
            ],
        )
        .header(
            Row::new(["ID", "WHO", "CONNECTION", "LEFT", "RULE", "STATEMENT"]).style(t.heading()),
        )
        .column_spacing(1)
        .row_highlight_style(t.selected());
        let mut state = TableState::default().with_selected(selected);
        StatefulWidget::render(table, list, buf, &mut state);

        let Some(p) = selected.map(|i| rows[i]) else {
            return;
        };
        let groups = if p.groups.is_empty() {
            String::new()
        } else {
            format!(" ({})", clean(&p.groups.join(",")))
        };
        let approvers = if p.approvers.is_empty() {
            "any approver".to_owned()
        } else {
            clean(&p.approvers.join(", "))
        };
        let text = vec![
            Line::from(vec![
                Span::styled(format!("{} ", p.id), t.heading()),
                Span::raw(format!(
                    "{}{} on {}, rule {:?}, asked {} UTC, decided by {approvers}",
                    clean(&p.identity),
                    groups,
                    clean(&p.connection),
                    clean(&p.rule),
                    clock(p.requested_at),
                )),
            ]),
            Line::from(clean(&p.statement)),
        ];
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .render(detail, buf);
    }
}
