//! A ratatui backend that writes plain ANSI/VT100 sequences into a buffer.
//!
//! The same bytes go to the local tty and down an SSH channel, so the
//! backend does no I/O and never asks a terminal anything: its size is
//! what the driver tells it (the tty's window size, or the SSH PTY's and
//! its window changes). It emits only what a VT100 understands — cursor
//! position (CUP), erase (ED), and SGR bold, underline, reverse and reset
//! — plus the eight basic colours when the theme allows them, so the
//! console works on a serial line as well as in xterm.

use std::convert::Infallible;
use std::fmt::Write as _;

use ratatui::backend::{Backend, ClearType, WindowSize};
use ratatui::buffer::{Cell, CellDiffOption};
use ratatui::layout::{Position, Size};
use ratatui::style::{Color, Modifier};

pub struct AnsiBackend {
    out: String,
    size: Size,
    colour: bool,
    cursor: Position,
    /// Where the terminal's cursor is, if known, to skip needless moves.
    at: Option<Position>,
    /// The SGR state last written.
    pen: Option<(Modifier, Color, Color)>,
}

impl AnsiBackend {
    pub fn new(size: Size, colour: bool) -> Self {
        AnsiBackend {
            out: String::new(),
            size,
            colour,
            cursor: Position::ORIGIN,
            at: None,
            pen: None,
        }
    }

    /// The terminal changed size; the next draw repaints everything.
    pub fn resize(&mut self, size: Size) {
        self.size = size;
        self.at = None;
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out).into_bytes()
    }

    /// Sequences that set the terminal up for the console: the alternate
    /// screen where there is one (ignored elsewhere), no cursor, a clean
    /// page.
    pub fn enter() -> &'static [u8] {
        b"\x1b[?1049h\x1b[?25l\x1b[0m\x1b[H\x1b[2J"
    }

    /// And back: attributes reset, cursor shown, screen cleared for
    /// terminals without an alternate screen.
    pub fn leave() -> &'static [u8] {
        b"\x1b[0m\x1b[H\x1b[2J\x1b[?25h\x1b[?1049l"
    }

    fn move_to(&mut self, x: u16, y: u16) {
        if self.at != Some(Position { x, y }) {
            let _ = write!(self.out, "\x1b[{};{}H", y + 1, x + 1);
        }
    }

    fn pen(&mut self, cell: &Cell) {
        let (fg, bg) = if self.colour {
            (cell.fg, cell.bg)
        } else {
            (Color::Reset, Color::Reset)
        };
        let wanted = (cell.modifier, fg, bg);
        if self.pen == Some(wanted) {
            return;
        }
        self.out.push_str("\x1b[0");
        let m = cell.modifier;
        for (flag, code) in [
            (Modifier::BOLD, ";1"),
            (Modifier::UNDERLINED, ";4"),
            (Modifier::REVERSED, ";7"),
        ] {
            if m.contains(flag) {
                self.out.push_str(code);
            }
        }
        if let Some(c) = basic(fg) {
            let _ = write!(self.out, ";{}", 30 + c);
        }
        if let Some(c) = basic(bg) {
            let _ = write!(self.out, ";{}", 40 + c);
        }
        self.out.push('m');
        self.pen = Some(wanted);
    }
}

/// The basic colour number (0–7) of `c`, if it has one the theme uses.
fn basic(c: Color) -> Option<u8> {
    Some(match c {
        Color::Black => 0,
        Color::Red | Color::LightRed => 1,
        Color::Green | Color::LightGreen => 2,
        Color::Yellow | Color::LightYellow => 3,
        Color::Blue | Color::LightBlue => 4,
        Color::Magenta | Color::LightMagenta => 5,
        Color::Cyan | Color::LightCyan => 6,
        Color::Gray | Color::White | Color::DarkGray => 7,
        Color::Indexed(n) if n < 8 => n,
        Color::Indexed(n) if n < 16 => n - 8,
        _ => return None,
    })
}

impl Backend for AnsiBackend {
    type Error = Infallible;

    fn draw<'a, I>(&mut self, content: I) -> Result<(), Infallible>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        for (x, y, cell) in content {
            if cell.diff_option == CellDiffOption::Skip {
                continue;
            }
            self.move_to(x, y);
            self.pen(cell);
            let symbol = cell.symbol();
            // Never a control character: the terminal would act on it.
            if symbol.chars().any(char::is_control) {
                self.out.push(' ');
            } else {
                self.out.push_str(symbol);
            }
            let width = unicode_width::UnicodeWidthStr::width(symbol).max(1) as u16;
            // Past the last column the cursor's place is terminal-specific.
            self.at = (x + width < self.size.width).then_some(Position { x: x + width, y });
        }
        Ok(())
    }

    fn hide_cursor(&mut self) -> Result<(), Infallible> {
        self.out.push_str("\x1b[?25l");
        Ok(())
    }

    fn show_cursor(&mut self) -> Result<(), Infallible> {
        self.out.push_str("\x1b[?25h");
        Ok(())
    }

    fn get_cursor_position(&mut self) -> Result<Position, Infallible> {
        Ok(self.cursor)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> Result<(), Infallible> {
        let p = position.into();
        self.cursor = p;
        self.move_to(p.x, p.y);
        self.at = Some(p);
        Ok(())
    }

    fn clear(&mut self) -> Result<(), Infallible> {
        self.out.push_str("\x1b[0m\x1b[H\x1b[2J");
        self.pen = None;
        self.at = Some(Position::ORIGIN);
        Ok(())
    }

    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Infallible> {
        match clear_type {
            ClearType::All => return self.clear(),
            ClearType::AfterCursor => self.out.push_str("\x1b[0J"),
            ClearType::BeforeCursor => self.out.push_str("\x1b[1J"),
            ClearType::CurrentLine => self.out.push_str("\x1b[2K"),
            ClearType::UntilNewLine => self.out.push_str("\x1b[0K"),
        }
        Ok(())
    }

    fn size(&self) -> Result<Size, Infallible> {
        Ok(self.size)
    }

    fn window_size(&mut self) -> Result<WindowSize, Infallible> {
        Ok(WindowSize {
            columns_rows: self.size,
            pixels: Size::default(),
        })
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::style::{Style, Stylize};
    use ratatui::text::Line;

    /// What a VT100 would show after these bytes.
    fn screen(bytes: &[u8], w: u16, h: u16) -> vt100::Parser {
        let mut p = vt100::Parser::new(
            std::num::NonZeroU16::new(h).unwrap(),
            std::num::NonZeroU16::new(w).unwrap(),
            0,
        );
        p.process(bytes);
        p
    }

    #[test]
    fn frames_reproduce_on_a_vt100_and_use_only_its_sequences() {
        let mut term =
            Terminal::new(AnsiBackend::new(Size::new(20, 3), false)).expect("infallible");
        term.draw(|f| {
            f.render_widget(Line::from("sessions".bold()), f.area());
            let row = ratatui::layout::Rect::new(0, 1, 20, 1);
            f.render_widget(
                Line::from("alice \u{1b}[2J").style(Style::new().reversed().red()),
                row,
            );
        })
        .unwrap();
        let bytes = term.backend_mut().take();
        let text = String::from_utf8(bytes.clone()).unwrap();
        // Monochrome: no colour codes at all.
        assert!(!text.contains(";31") && !text.contains("38;"), "{text:?}");
        let p = screen(&bytes, 20, 3);
        let s = p.screen();
        assert_eq!(s.contents_between(0, 0, 0, 20).trim_end(), "sessions");
        assert!(s.cell(0, 0).unwrap().bold());
        assert!(s.cell(1, 0).unwrap().inverse());
        // The escape from the data is shown, never obeyed.
        assert!(s.contents().contains("alice"));
        assert!(s.contents().contains("sessions"));
    }

    #[test]
    fn only_changes_are_sent_after_the_first_frame() {
        let mut term = Terminal::new(AnsiBackend::new(Size::new(10, 2), true)).expect("infallible");
        term.draw(|f| f.render_widget(Line::from("abc".red()), f.area()))
            .unwrap();
        let first = term.backend_mut().take();
        assert!(String::from_utf8_lossy(&first).contains(";31m"));
        term.draw(|f| f.render_widget(Line::from("abd".red()), f.area()))
            .unwrap();
        let second = String::from_utf8(term.backend_mut().take()).unwrap();
        assert!(second.contains('d') && !second.contains("ab"), "{second:?}");
    }
}
