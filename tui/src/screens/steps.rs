//! The statement list and the statement detail, shared by the live view
//! and the replay of query sessions.

use std::collections::VecDeque;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};

use super::{clip, clock, short_duration};
use crate::theme::Theme;
use crate::timeline::{Step, StepOutcome};

fn outcome(step: &Step) -> String {
    if step.note {
        return String::new();
    }
    match &step.outcome {
        StepOutcome::Running => "...".into(),
        StepOutcome::WaitingForApproval { .. } => "WAITING".into(),
        StepOutcome::Ok { tag } => tag.clone(),
        StepOutcome::Error { code, .. } => format!("ERR {code}"),
        StepOutcome::Blocked { .. } => "BLOCKED".into(),
    }
}

fn style(step: &Step, t: Theme) -> Style {
    match &step.outcome {
        _ if step.note => t.quiet(),
        StepOutcome::WaitingForApproval { .. } => t.waiting(),
        StepOutcome::Error { .. } | StepOutcome::Blocked { .. } => t.alert(),
        _ => Style::new(),
    }
}

/// One row per statement: time, duration, rows, result, masked, text.
pub fn list(
    steps: &VecDeque<Step>,
    selected: Option<usize>,
    t: Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let body = steps.iter().map(|s| {
        let (dur, rows) = if s.note {
            (String::new(), String::new())
        } else {
            (
                s.duration().map(short_duration).unwrap_or_default(),
                s.rows.to_string(),
            )
        };
        let masked = if s.masked.is_empty() { "" } else { "M" };
        Row::new([
            clock(s.at),
            dur,
            rows,
            clip(&outcome(s), 12),
            masked.to_owned(),
            s.text.clone(),
        ])
        .style(style(s, t))
    });
    let table = Table::new(
        body,
        [
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(12),
            Constraint::Length(1),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["TIME", "TOOK", "ROWS", "RESULT", "M", "STATEMENT"]).style(t.heading()))
    .column_spacing(1)
    .row_highlight_style(t.selected());
    let mut state = TableState::default().with_selected(selected);
    StatefulWidget::render(table, area, buf, &mut state);
}

/// Everything recorded about one statement: its text, outcome, bound
/// parameters, policy remarks, masking, and the recorded result rows.
pub fn detail(step: &Step, t: Theme, area: Rect, buf: &mut Buffer) {
    let mut lines = vec![Line::from(step.text.clone())];
    if !step.note {
        let took = step
            .duration()
            .map(|d| format!(" in {}", short_duration(d)))
            .unwrap_or_default();
        let result = match &step.outcome {
            StepOutcome::Error { code, message } => format!("error {code}: {message}"),
            StepOutcome::Blocked { rule } => format!("blocked by rule {rule:?}"),
            StepOutcome::WaitingForApproval { id } => format!("waiting for approval {id}"),
            StepOutcome::Running => "no answer recorded".into(),
            StepOutcome::Ok { tag } => tag.clone(),
        };
        let rows = if step.rows_recorded < step.rows {
            format!(", {} rows ({} recorded)", step.rows, step.rows_recorded)
        } else if step.rows > 0 {
            format!(", {} rows", step.rows)
        } else {
            String::new()
        };
        lines.push(Line::from(vec![
            Span::styled("result: ", t.heading()),
            Span::styled(format!("{result}{took}{rows}"), style(step, t)),
        ]));
        if !step.params.is_empty() {
            let params: Vec<String> = step
                .params
                .iter()
                .map(|p| p.as_deref().map_or("NULL".to_owned(), |v| format!("{v:?}")))
                .collect();
            lines.push(Line::from(format!("parameters: {}", params.join(", "))));
        }
        if !step.masked.is_empty() {
            let masked: Vec<String> = step
                .masked
                .iter()
                .map(|(rule, what, n)| format!("{what} x{n} (rule {rule})"))
                .collect();
            lines.push(Line::from(Span::styled(
                format!("masked: {}", masked.join(", ")),
                t.waiting(),
            )));
        }
    }
    for r in &step.remarks {
        lines.push(Line::from(r.clone()));
    }
    let text_height = (lines.len() as u16 + 1).min(area.height);
    let [text, table] =
        Layout::vertical([Constraint::Length(text_height), Constraint::Fill(1)]).areas(area);
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .render(text, buf);
    if step.columns.is_empty() || table.height < 2 {
        return;
    }
    let widths = vec![Constraint::Fill(1); step.columns.len().min(12)];
    let rows = step.sample.iter().map(|r| {
        Row::new(
            r.iter()
                .take(12)
                .map(|v| v.clone().unwrap_or_else(|| "NULL".into())),
        )
    });
    let table_area = table;
    let table = Table::new(rows, widths)
        .header(Row::new(step.columns.iter().take(12).cloned()).style(t.heading()))
        .column_spacing(1);
    Widget::render(table, table_area, buf);
}
