//! Drawing the console: one file per screen, each reading the state it
//! owns; this module draws the frame every screen shares — the title bar
//! (screens, counts, who is acting, dropped updates), the status line
//! (prompts, the approval banner, the last action's outcome) and the key
//! bar — and the formatting helpers the screens share.
//!
//! ```text
//!  Gatehouse bastion-1  [1 Sessions 3]  2 Approvals 1  3 Recordings     alice
//! ! approval 5f2c9a1e: ci-bot on orders-db waits: delete from … (press 2)
//! IDENTITY      CONNECTION  PROTOCOL  STARTED   DURATION   BYTES  STMTS STATE
//! …
//!  Enter live  K kill  / filter  1 2 3 screens  ? help  q quit
//! ```

pub mod approvals;
pub mod help;
pub mod live;
pub mod recordings;
pub mod replay;
pub mod sessions;
mod steps;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::app::{App, Detail, Mode, Screen};
use crate::keys::Key;

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [title, status, body, keys] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        title_bar(self, title, buf);
        status_line(self, status, buf);
        if self.mode == Mode::Help {
            help::render(self, body, buf);
        } else {
            match &self.detail {
                Some(Detail::Live(live)) => live.render(self, body, buf),
                Some(Detail::Replay(replay)) => replay.render(self, body, buf),
                None => match self.screen {
                    Screen::Sessions => self.sessions.render(self, body, buf),
                    Screen::Approvals => self.approvals.render(self, body, buf),
                    Screen::Recordings => self.recordings.render(self, body, buf),
                },
            }
        }
        key_bar(self, keys, buf);
    }
}

fn title_bar(app: &App, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    buf.set_style(area, t.bar());
    let tab = |n: char, name: &str, count: usize, screen: Screen| {
        let text = if count > 0 {
            format!("{n} {name} {count}")
        } else {
            format!("{n} {name}")
        };
        if app.screen == screen && app.detail.is_none() {
            Span::styled(format!("[{text}]"), t.bar().patch(t.bar_current()))
        } else {
            Span::styled(format!(" {text} "), t.bar())
        }
    };
    let mut left = vec![Span::styled(
        format!(" Gatehouse {} ", clip(&app.appliance, 20)),
        t.bar().patch(t.bar_current()),
    )];
    left.push(tab(
        '1',
        "Sessions",
        app.sessions.live_count(),
        Screen::Sessions,
    ));
    left.push(tab(
        '2',
        "Approvals",
        app.approvals.pending.len(),
        Screen::Approvals,
    ));
    left.push(tab('3', "Recordings", 0, Screen::Recordings));
    let left = Line::from(left);
    let used = left.width() as u16;
    left.render(area, buf);
    let mut right = String::new();
    if app.dropped > 0 {
        right.push_str(&format!("dropped {}  ", app.dropped));
    }
    right.push_str(&app.operator);
    // The screens come first; what is left of the bar names the operator.
    let room = usize::from(area.width.saturating_sub(used + 2));
    let right = clip(&right, room);
    Line::from(Span::styled(format!("{right} "), t.bar()))
        .right_aligned()
        .render(area, buf);
}

fn status_line(app: &App, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let line = match &app.mode {
        Mode::Filter => Line::from(vec![
            Span::styled("/", t.key()),
            Span::raw(app.filter().to_owned()),
            Span::styled("_", t.key()),
        ]),
        Mode::ConfirmKill { label, .. } => Line::from(vec![
            Span::styled(format!("! Kill {label}? "), t.alert()),
            Span::styled("y", t.key()),
            Span::raw(" kills it"),
        ]),
        Mode::DenyReason { id, reason } => Line::from(vec![
            Span::styled(format!("Deny {id}, reason: "), t.waiting()),
            Span::raw(reason.clone()),
            Span::styled("_", t.key()),
        ]),
        _ => match (&app.banner, &app.status) {
            (Some(b), _) => Line::from(Span::styled(format!("! {}", b.text), t.alert())),
            (None, Some((text, true))) => Line::from(Span::styled(format!("! {text}"), t.alert())),
            (None, Some((text, false))) => Line::from(Span::raw(text.clone())),
            (None, None) if !app.filter().is_empty() && app.detail.is_none() => Line::from(vec![
                Span::styled("filter: ", t.key()),
                Span::raw(app.filter().to_owned()),
            ]),
            (None, None) => Line::default(),
        },
    };
    line.render(area, buf);
}

/// The keys that work here, most useful first; the bar shows as many as
/// fit.
fn keys_for(app: &App) -> Vec<(&'static str, &'static str)> {
    match &app.mode {
        Mode::Filter => return vec![("Enter", "keep"), ("Esc", "clear"), ("Bksp", "erase")],
        Mode::ConfirmKill { .. } => return vec![("y", "kill"), ("n", "cancel")],
        Mode::DenyReason { .. } => return vec![("Enter", "deny"), ("Esc", "cancel")],
        Mode::Help => return vec![("any key", "back")],
        Mode::Normal => {}
    }
    let mut keys = match &app.detail {
        Some(Detail::Live(live)) if live.showing_terminal() => {
            vec![("t", "commands"), ("K", "kill"), ("q", "back")]
        }
        Some(Detail::Live(live)) => {
            let mut keys = vec![("j/k", "scroll"), ("End", "follow")];
            if live.terminal.is_some() {
                keys.push(("t", "terminal"));
            }
            keys.extend([("K", "kill"), ("q", "back")]);
            keys
        }
        Some(Detail::Replay(r)) => r.keys(),
        None => match app.screen {
            Screen::Sessions => vec![("Enter", "live"), ("K", "kill"), ("/", "filter")],
            Screen::Approvals => vec![("a", "approve"), ("d", "deny"), ("/", "filter")],
            Screen::Recordings => vec![("Enter", "replay"), ("v", "verify"), ("/", "filter")],
        },
    };
    keys.extend([("1-3", "screens"), ("?", "help")]);
    if app.detail.is_none() {
        keys.push(("q", "quit"));
    }
    keys
}

fn key_bar(app: &App, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    buf.set_style(area, t.bar());
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1;
    for (key, what) in keys_for(app) {
        let width = key.len() + what.len() + 3;
        if used + width > usize::from(area.width) {
            break;
        }
        used += width;
        spans.push(Span::styled(key, t.bar().patch(t.key())));
        spans.push(Span::styled(format!(" {what}  "), t.bar()));
    }
    Line::from(spans).render(area, buf);
}

/// Move a selection among `len` rows for a navigation key; `None` when
/// the key is not one.
pub fn step(current: Option<usize>, len: usize, key: Key, page: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let last = len - 1;
    let at = current.unwrap_or(0).min(last);
    Some(match key {
        Key::Up | Key::Char('k') => at.saturating_sub(1),
        Key::Down | Key::Char('j') => (at + 1).min(last),
        Key::PageUp => at.saturating_sub(page),
        Key::PageDown => (at + page).min(last),
        Key::Home | Key::Char('g') => 0,
        Key::End | Key::Char('G') => last,
        _ => return None,
    })
}

/// `s` cut to `max` characters, with `~` marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('~');
    out
}

/// A duration in µs as `59s`, `12m03s`, `3h04m`, `2d03h`.
pub fn duration(micros: i64) -> String {
    let s = micros.max(0) / 1_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A short duration in µs for statements: `0.4ms`, `12ms`, `3.2s`.
pub fn short_duration(micros: i64) -> String {
    match micros.max(0) {
        m @ 0..10_000 => format!("{:.1}ms", m as f64 / 1000.0),
        m @ 10_000..1_000_000 => format!("{}ms", m / 1000),
        m => format!("{:.1}s", m as f64 / 1e6),
    }
}

/// Bytes as `812B`, `12.3K`, `4.1M`, `1.2G`.
pub fn bytes(n: u64) -> String {
    match n {
        0..1000 => format!("{n}B"),
        1000..1_000_000 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// Unix µs as `HH:MM:SS` (UTC).
pub fn clock(micros: i64) -> String {
    let t = gatehouse_actors::recording::format_time(micros);
    t.get(11..19).unwrap_or(&t).to_owned()
}

/// Unix µs as `YYYY-MM-DD HH:MM` (UTC).
pub fn day_and_time(micros: i64) -> String {
    let t = gatehouse_actors::recording::format_time(micros);
    match (t.get(..10), t.get(11..16)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t,
    }
}

/// Whether any of `cells` contains `filter`, case-insensitively.
pub fn matches(filter: &str, cells: &[String]) -> bool {
    if filter.is_empty() {
        return true;
    }
    let filter = filter.to_lowercase();
    filter
        .split_whitespace()
        .all(|word| cells.iter().any(|c| c.to_lowercase().contains(word)))
}

/// A line of `text` in `style`, for one-line messages in a body.
pub fn message(area: Rect, buf: &mut Buffer, text: &str, style: Style) {
    Line::from(Span::styled(text.to_owned(), style)).render(area, buf);
}

#[cfg(test)]
mod tests;
