//! How the console looks on the terminal it has.
//!
//! Structure never depends on colour: the selected row is reverse video,
//! headings are bold, warnings are bold and marked with text (`!`), so a
//! VT100 on a serial line or a monochrome screen reads the same console.
//! Colour, where the terminal has it, only adds emphasis, and only the
//! eight basic colours every colour terminal (the Linux console included)
//! knows.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub colour: bool,
}

impl Theme {
    /// From the terminal's `TERM` and the `NO_COLOR` convention.
    pub fn for_terminal(term: &str, no_colour: bool) -> Theme {
        let mono = no_colour
            || term.is_empty()
            || term == "dumb"
            || term.starts_with("vt100")
            || term.starts_with("vt102")
            || term.starts_with("vt220");
        Theme { colour: !mono }
    }

    pub const MONO: Theme = Theme { colour: false };

    fn tint(&self, style: Style, colour: Color) -> Style {
        if self.colour { style.fg(colour) } else { style }
    }

    /// The title and key bars.
    pub fn bar(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// The current screen's name in the title bar.
    pub fn bar_current(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn heading(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// Something that needs the operator: a request waiting, a failure.
    pub fn alert(&self) -> Style {
        self.tint(Style::new().add_modifier(Modifier::BOLD), Color::Red)
    }

    /// A session waiting for approval, a pending countdown.
    pub fn waiting(&self) -> Style {
        self.tint(Style::new().add_modifier(Modifier::BOLD), Color::Yellow)
    }

    pub fn good(&self) -> Style {
        self.tint(Style::new(), Color::Green)
    }

    /// Ended sessions and other things of the past.
    pub fn quiet(&self) -> Style {
        self.tint(Style::new(), Color::Blue)
    }

    pub fn key(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_terminals_get_no_colour() {
        assert!(!Theme::for_terminal("vt100", false).colour);
        assert!(!Theme::for_terminal("dumb", false).colour);
        assert!(!Theme::for_terminal("xterm-256color", true).colour);
        assert!(Theme::for_terminal("linux", false).colour);
        assert!(Theme::for_terminal("xterm-256color", false).colour);
    }
}
