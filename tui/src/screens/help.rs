//! `?`: every key, on one page that fits 80×24.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::app::App;

const KEYS: &[(&str, &str)] = &[
    ("1 2 3", "Sessions, Approvals, Recordings"),
    (
        "Up/Down j/k",
        "move; PgUp/PgDn a page, Home/End (g/G) first and last",
    ),
    (
        "/",
        "filter by any visible text (Enter keeps it, Esc clears it)",
    ),
    ("Enter", "Sessions: live view; Recordings: replay"),
    ("K", "kill the selected live session (asks y first)"),
    ("a", "Approvals: approve the selected statement"),
    ("d", "Approvals: deny it with a reason (Enter sends)"),
    ("v", "Recordings and replay: verify the chain and seal"),
    (
        "Left/Right",
        "replay: previous/next statement; terminal: seek 5 s",
    ),
    (
        "space + -",
        "terminal replay: pause, faster, slower (1x 2x 8x max)",
    ),
    (
        "t",
        "terminal session: its commands (replay: Enter plays from one)",
    ),
    ("End", "live view: follow new events again"),
    ("q Esc", "back from a view; on a screen, leave the console"),
    ("Ctrl-L Ctrl-C", "redraw; leave at once"),
];

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let mut lines = vec![Line::from(Span::styled("Keys", t.heading()))];
    for (key, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!("  {key:<14}"), t.key()),
            Span::raw(*what),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(format!("Acting as {}.", app.operator)));
    lines.push(Line::from(
        "Every kill and decision is recorded under that name.",
    ));
    Paragraph::new(lines).render(area, buf);
}
