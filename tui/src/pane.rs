//! A terminal inside the console: an emulated VT100 screen drawn as a
//! widget, for the live view and the replay of terminal sessions.
//!
//! The screen comes from `vt100` fed with the session's output, so what
//! the operator sees is what the agent's terminal showed — not the raw
//! bytes, which could drive the operator's own terminal. A recorded
//! terminal larger than the pane is cut at the right and bottom (the
//! caller says so); colours pass through only where the theme has them.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::Widget;

use crate::theme::Theme;

pub struct TerminalPane<'a> {
    pub screen: &'a vt100::Screen,
    pub theme: Theme,
    /// Draw the emulated cursor (reverse video).
    pub cursor: bool,
}

fn colour(c: vt100::Color) -> Color {
    match c {
        vt100::Color::Default => Color::Reset,
        vt100::Color::Idx(n) => Color::Indexed(n),
        vt100::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

impl Widget for TerminalPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (rows, cols) = self.screen.size();
        let (cur_row, cur_col) = self.screen.cursor_position();
        // A terminal taller than the pane shows the rows around the
        // cursor, where things happen.
        let top = (cur_row + 1)
            .saturating_sub(area.height)
            .min(rows.get().saturating_sub(area.height));
        let (rows, cols) = (rows.get().min(area.height), cols.get().min(area.width));
        let show_cursor = self.cursor && !self.screen.hide_cursor();
        for y in 0..rows {
            let row = top + y;
            for col in 0..cols {
                let Some(cell) = self.screen.cell(row, col) else {
                    continue;
                };
                if cell.is_wide_continuation() {
                    // Covered by the wide character before it.
                    continue;
                }
                let target = &mut buf[(area.x + col, area.y + y)];
                let text = cell.contents();
                // A wide character in the last column would spill over.
                if text.is_empty() || (cell.is_wide() && col + 1 >= cols) {
                    target.set_symbol(" ");
                } else {
                    target.set_symbol(text);
                }
                let mut style = Style::new();
                if self.theme.colour {
                    style = style.fg(colour(cell.fgcolor())).bg(colour(cell.bgcolor()));
                }
                let mut m = Modifier::empty();
                if cell.bold() {
                    m |= Modifier::BOLD;
                }
                if cell.underline() {
                    m |= Modifier::UNDERLINED;
                }
                if cell.inverse() ^ (show_cursor && row == cur_row && col == cur_col) {
                    m |= Modifier::REVERSED;
                }
                target.set_style(style.add_modifier(m));
            }
        }
    }
}

/// Whether a `cols`×`rows` terminal is cut when shown in `area`.
pub fn clipped(screen: &vt100::Screen, area: Rect) -> bool {
    let (rows, cols) = screen.size();
    rows.get() > area.height || cols.get() > area.width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pane_shows_the_emulated_screen_not_the_bytes() {
        let mut p = vt100::Parser::new(
            std::num::NonZeroU16::new(3).unwrap(),
            std::num::NonZeroU16::new(12).unwrap(),
            0,
        );
        // Output that clears, moves the cursor and sets attributes.
        p.process(b"junk\x1b[2J\x1b[H\x1b[1mroot\x1b[0m@web-1\r\n$ ls\x1b[7m!\x1b[0m");
        let mut buf = Buffer::empty(Rect::new(0, 0, 10, 3));
        TerminalPane {
            screen: p.screen(),
            theme: Theme::MONO,
            cursor: false,
        }
        .render(buf.area, &mut buf);
        let lines: Vec<String> = (0..3)
            .map(|y| (0..10).map(|x| buf[(x, y)].symbol().to_owned()).collect())
            .collect();
        assert_eq!(lines, ["root@web-1", "$ ls!     ", "          "]);
        assert!(buf[(0, 0)].modifier.contains(Modifier::BOLD));
        assert!(!buf[(4, 0)].modifier.contains(Modifier::BOLD));
        assert!(buf[(4, 1)].modifier.contains(Modifier::REVERSED));
        assert!(clipped(p.screen(), buf.area));
    }
}
