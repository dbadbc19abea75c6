//! The command line of an interactive shell, read off the screen when the
//! agent presses Enter, so command rules judge what the shell will run
//! rather than the keys that were pressed (history recall, tab completion,
//! editing, pastes all end up on the screen). No I/O: the relay feeds the
//! output the agent sees and asks for the line.
//!
//! The line runs from where the cursor stood at the first keystroke after
//! the last Enter (the end of the prompt) to the cursor, across wrapped
//! rows and scrolling. When that start scrolled off the screen, or the
//! terminal was resized meanwhile, the line cannot be read and is refused
//! rather than guessed. Full-screen programs (the alternate screen: vim,
//! less, top) are not shells; their Enter passes.

use std::num::NonZeroU16;

/// Counts rows that scroll off the top of the main screen.
#[derive(Default)]
struct Scrolls(u64);

impl vt100::Callbacks for Scrolls {
    fn on_scroll(&mut self, _: vt100::capture::RowContents<'_>, alternate_screen: bool) {
        if !alternate_screen {
            self.0 += 1;
        }
    }
}

/// What the screen shows when Enter is pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// The command line (prompt left out).
    Line(String),
    /// The line cannot be read; why.
    Unreadable(&'static str),
}

pub struct LineWatch {
    parser: vt100::Parser<Scrolls>,
    /// Cursor (row, col) at the first keystroke of this line, and the
    /// scroll count then.
    start: Option<(u16, u16, u64)>,
    resized: bool,
    /// The printable keys typed since the last Enter (backspace and
    /// Ctrl-U applied, escape sequences left out): judged too, so a line
    /// typed with echo off (`stty -echo`) is not a way around the rules.
    keys: Vec<u8>,
    escape: bool,
    /// Output arrived after the last keystroke (its echo, normally).
    echoed: bool,
    /// The prompt, as last seen before a line typed on one row: keys
    /// typed ahead of a prompt start the line in the output before it.
    prompt: Option<String>,
    full: String,
    /// Keys since the last line that edit or recall (Escape sequences,
    /// Backspace, Ctrl-U): with nothing shown, the line is unknowable.
    edited: bool,
    /// The row's text before the line's first keystroke.
    start_prompt: String,
}

/// What Enter would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entered {
    pub shown: Shown,
    /// A full-screen program (the alternate screen) has the terminal.
    pub full_screen: bool,
    /// What stood before the line on its first row (the prompt).
    pub prompt: String,
    pub keys: String,
    /// Everything from the line's start to its end when it spans rows
    /// (typed ahead of a prompt, or output arrived meanwhile); judged too.
    pub full: String,
}

/// Keys kept per line; more is a paste no rule needs whole.
const MAX_KEYS: usize = 64 * 1024;

/// The largest terminal the emulator takes: vt100 allocates every cell
/// up front, so an agent's 65535×65535 would be tens of gigabytes.
const MAX_COLS: u32 = 500;
const MAX_ROWS: u32 = 200;

fn nz(n: u32, max: u32, default: u16) -> NonZeroU16 {
    NonZeroU16::new(u16::try_from(n.min(max)).unwrap_or(default))
        .unwrap_or(NonZeroU16::new(default).unwrap_or(NonZeroU16::MIN))
}

impl LineWatch {
    pub fn new(cols: u32, rows: u32) -> Self {
        // No scrollback: every row scrolled off is counted, none kept.
        LineWatch {
            parser: vt100::Parser::new_with_callbacks(
                nz(rows, MAX_ROWS, 24),
                nz(cols, MAX_COLS, 80),
                0,
                Scrolls::default(),
            ),
            start: None,
            resized: false,
            keys: Vec::new(),
            escape: false,
            echoed: true,
            prompt: None,
            full: String::new(),
            edited: false,
            start_prompt: String::new(),
        }
    }

    /// Output the agent's terminal shows.
    pub fn output(&mut self, bytes: &[u8]) {
        self.parser.process(bytes);
        if !bytes.is_empty() {
            self.echoed = true;
        }
    }

    /// Whether the line on the screen is exactly the keys typed since
    /// the last Enter (plain typing, its echo complete).
    pub fn shows_keys(&mut self) -> bool {
        if self.keys.is_empty() || self.escape || !self.echoed {
            return false;
        }
        let full = std::mem::take(&mut self.full);
        let shown = self.shown();
        self.full = full;
        matches!(shown, Shown::Line(l) if l.as_bytes() == self.keys.as_slice().trim_ascii_end())
    }

    /// Whether output came after the last keystroke.
    pub fn echoed(&self) -> bool {
        self.echoed
    }

    pub fn resize(&mut self, cols: u32, rows: u32) {
        self.parser
            .set_size(nz(rows, MAX_ROWS, 24), nz(cols, MAX_COLS, 80));
        if self.start.is_some() {
            self.resized = true;
        }
    }

    /// The agent typed keys other than Enter.
    pub fn typed(&mut self, keys: &[u8]) {
        if keys.is_empty() {
            return;
        }
        if self.start.is_none() {
            let screen = self.parser.screen();
            let (row, col) = screen.cursor_position();
            self.start_prompt = screen.contents_between(row, 0, row, col);
            self.start = Some((row, col, self.parser.callbacks().0));
        }
        self.echoed = false;
        for &b in keys {
            if self.escape {
                // CSI and SS3 sequences end with a letter or `~`.
                if b.is_ascii_alphabetic() || b == b'~' {
                    self.escape = false;
                }
                continue;
            }
            match b {
                0x1b => {
                    self.escape = true;
                    self.edited = true;
                }
                0x7f | 0x08 => {
                    self.edited = true;
                    // One character back, whatever its UTF-8 length.
                    while let Some(c) = self.keys.pop() {
                        if c & 0xc0 != 0x80 {
                            break;
                        }
                    }
                }
                0x15 => {
                    self.keys.clear();
                    self.edited = true;
                }
                b if b >= 0x20 && self.keys.len() < MAX_KEYS => self.keys.push(b),
                _ => {}
            }
        }
    }

    /// The line Enter would run; then the next keystroke starts a new one.
    pub fn entered(&mut self) -> Entered {
        let entered = self.peek();
        self.reset();
        entered
    }

    /// The line as it stands, for a key that may run it without ending
    /// it (any control key can be bound to run the line).
    pub fn peek(&mut self) -> Entered {
        let mut shown = self.shown();
        let keys = String::from_utf8_lossy(&self.keys).into_owned();
        let full = std::mem::take(&mut self.full);
        if matches!(&shown, Shown::Line(l) if l.trim().is_empty()) && self.edited && !self.echoed {
            // Nothing on the screen (echo off) and keys that edit or
            // recall: what the shell holds cannot be known.
            shown = Shown::Unreadable("the line was edited or recalled with nothing shown");
        }
        Entered {
            shown,
            keys,
            full,
            full_screen: self.parser.screen().alternate_screen(),
            prompt: self.start_prompt.clone(),
        }
    }

    /// Start a new line with the next keystroke.
    pub fn reset(&mut self) {
        self.start = None;
        self.resized = false;
        self.keys.clear();
        self.escape = false;
        self.edited = false;
        self.start_prompt.clear();
    }

    /// Whether the cursor sits on a fresh prompt: its row shows `prompt`
    /// (what stood before the cancelled line) up to the cursor and
    /// nothing after it. A cancelled line the shell kept fails this.
    pub fn at_fresh_prompt(&self, prompt: &str) -> bool {
        let screen = self.parser.screen();
        let (row, col) = screen.cursor_position();
        let (_, cols) = screen.size();
        let before = screen.contents_between(row, 0, row, col);
        let after = screen.contents_between(row, col, row, cols.get());
        if !after.trim().is_empty() {
            return false;
        }
        if prompt.trim().is_empty() {
            // The line was typed at the start of a row (after output):
            // any row ending like a prompt will do.
            return before.trim_end().ends_with(['$', '#', '>', '%']);
        }
        before.trim_end() == prompt.trim_end()
    }

    fn shown(&mut self) -> Shown {
        let screen = self.parser.screen();
        let Some((row, col, scrolls_then)) = self.start else {
            // Enter alone: nothing typed since the last one.
            return Shown::Line(String::new());
        };
        if self.resized {
            return Shown::Unreadable("the terminal was resized while the line was typed");
        }
        let scrolled = self.parser.callbacks().0 - scrolls_then;
        let Some(row) = u64::from(row)
            .checked_sub(scrolled)
            .and_then(|r| u16::try_from(r).ok())
        else {
            return Shown::Unreadable("the start of the line scrolled off the screen");
        };
        let (end_row, end_col) = screen.cursor_position();
        let (_, cols) = screen.size();
        // The line ends at the cursor or at the end of what its rows show
        // (the cursor may sit inside the line after editing).
        let mut last = end_row;
        while last + 1 < screen.size().0.get() && screen.row_wrapped(last) {
            last += 1;
        }
        let (stop_row, stop_col) = if last > end_row {
            (last, cols.get())
        } else {
            (end_row, cols.get().max(end_col))
        };
        if (stop_row, stop_col) < (row, col) {
            return Shown::Unreadable("the cursor moved above the start of the line");
        }
        let text = screen.contents_between(row, col, stop_row, stop_col);
        let text = text.trim_end();
        if row == stop_row && col > 0 {
            let prompt = screen.contents_between(row, 0, row, col);
            if !prompt.trim().is_empty() {
                self.prompt = Some(prompt);
            }
            return Shown::Line(text.to_owned());
        }
        self.full = text.to_owned();
        Shown::Line(self.last_row(text))
    }
}

impl LineWatch {
    /// The command in a line that spans rows: its last row, after the
    /// known prompt (or a prompt-like marker). Every row is judged anyway
    /// ([`candidates`]); this is what the recording shows.
    fn last_row(&self, text: &str) -> String {
        if !text.contains('\n') {
            return text.to_owned();
        }
        let row = text
            .lines()
            .rev()
            .find(|r| !r.trim().is_empty())
            .unwrap_or_default();
        if let Some(p) = &self.prompt
            && let Some(rest) = row.strip_prefix(p.as_str())
        {
            return rest.trim().to_owned();
        }
        for marker in ["$ ", "# "] {
            if let Some(i) = row.find(marker) {
                return row[i + marker.len()..].trim().to_owned();
            }
        }
        row.trim().to_owned()
    }
}

/// What a line judged by command rules could be: each of its rows (a
/// paste of several lines runs each), and each row after a prompt-like
/// marker (`$ `, `# `, `> `, `% `), in case output or a prompt printed
/// after the first keystroke came before the command.
pub fn candidates(line: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for row in line.lines() {
        if out.len() > MAX_CANDIDATES {
            return None;
        }
        let row = row.trim();
        if row.is_empty() {
            continue;
        }
        out.push(row.to_owned());
        for marker in ["$ ", "# ", "> ", "% "] {
            let mut rest = row;
            while let Some(i) = rest.find(marker) {
                rest = &rest[i + marker.len()..];
                let c = rest.trim();
                if !c.is_empty() && !out.iter().any(|o| o == c) {
                    out.push(c.to_owned());
                }
                if out.len() > MAX_CANDIDATES {
                    return None;
                }
            }
        }
    }
    Some(out)
}

/// More readings than this of one line and it is refused as too
/// ambiguous to judge (each is matched against every rule).
const MAX_CANDIDATES: usize = 64;

/// Whether a key may run the line: Enter, and every other control key
/// but Tab, Backspace and Escape (readline and other line editors can
/// bind any of them to run the line: Ctrl-O, Ctrl-X Ctrl-E, Ctrl-J).
pub fn may_run(b: u8) -> bool {
    b < 0x20 && !matches!(b, b'\t' | 0x08 | 0x1b)
}

/// Whether a key ends the line (the next keystroke starts a new one):
/// Enter, Ctrl-O (run and fetch the next), Ctrl-C (cancel).
pub fn ends_line(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | 0x0f | 0x03)
}

/// Split input before each key that [`may_run`] the line: the pieces
/// before, between and after, each with the key that ends it.
pub fn split_enter(bytes: &[u8]) -> Vec<(&[u8], Option<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|&b| may_run(b)) {
        out.push((&rest[..i], Some(rest[i])));
        rest = &rest[i + 1..];
    }
    if !rest.is_empty() {
        out.push((rest, None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(w: &mut LineWatch, keys: &str, echo: &str) {
        w.typed(keys.as_bytes());
        w.output(echo.as_bytes());
    }

    fn line(w: &mut LineWatch) -> Shown {
        w.entered().shown
    }

    #[test]
    fn the_line_is_what_the_screen_shows_after_the_prompt() {
        let mut w = LineWatch::new(80, 24);
        w.output(b"Welcome\r\nuser@web-1:~$ ");
        typed(&mut w, "rm -rf /tmp/x", "rm -rf /tmp/x");
        assert_eq!(line(&mut w), Shown::Line("rm -rf /tmp/x".into()));
        // Editing: backspaces and a history recall redraw the line.
        w.output(b"\r\nuser@web-1:~$ ");
        typed(&mut w, "ls", "ls");
        w.output(b"\x08 \x08\x08 \x08");
        w.output(b"\r\x1b[Kuser@web-1:~$ shutdown -h now");
        assert_eq!(line(&mut w), Shown::Line("shutdown -h now".into()));
    }

    #[test]
    fn long_lines_wrap_and_scroll_and_are_still_read_whole() {
        let mut w = LineWatch::new(20, 3);
        w.output(b"a\r\nb\r\n$ ");
        let cmd = "echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        typed(&mut w, cmd, cmd);
        assert_eq!(line(&mut w), Shown::Line(cmd.into()));
        // Scrolled off entirely: refused, not guessed.
        let mut w = LineWatch::new(20, 3);
        w.output(b"$ ");
        w.typed(b"x");
        w.output(b"x\r\n1\r\n2\r\n3\r\n4\r\n");
        assert!(matches!(line(&mut w), Shown::Unreadable(_)));
    }

    #[test]
    fn an_absurd_terminal_size_is_clamped() {
        let mut w = LineWatch::new(65535, 65535);
        w.resize(u32::MAX, u32::MAX);
        w.output(b"$ ");
        typed(&mut w, "ls", "ls");
        assert_eq!(line(&mut w), Shown::Line("ls".into()));
    }

    #[test]
    fn full_screen_programs_and_resizes() {
        let mut w = LineWatch::new(80, 24);
        w.output(b"\x1b[?1049h~\r\n~");
        w.typed(b"x");
        assert!(w.entered().full_screen);
        let mut w = LineWatch::new(80, 24);
        w.output(b"$ ");
        w.typed(b"x");
        w.resize(100, 30);
        assert!(matches!(line(&mut w), Shown::Unreadable(_)));
    }

    #[test]
    fn keys_typed_ahead_of_the_prompt_give_the_command_after_it() {
        let mut w = LineWatch::new(80, 24);
        w.output(b"me@h:~$ ");
        typed(&mut w, "true", "true");
        assert_eq!(line(&mut w), Shown::Line("true".into()));
        // The next line is typed before the newline and prompt arrive.
        w.typed(b"rm -rf /x");
        w.output(b"\r\nme@h:~$ rm -rf /x");
        let e = w.entered();
        assert_eq!(e.shown, Shown::Line("rm -rf /x".into()));
        assert!(e.full.contains("me@h:~$ rm -rf /x"), "{:?}", e.full);
    }

    #[test]
    fn the_echo_is_complete_when_the_screen_shows_the_keys() {
        let mut w = LineWatch::new(80, 24);
        w.output(b"$ ");
        w.typed(b"ls -l");
        assert!(!w.shows_keys(), "no echo yet");
        w.output(b"ls -");
        assert!(!w.shows_keys(), "half the echo");
        w.output(b"l");
        assert!(w.shows_keys());
        // History recall: the screen shows more than the keys.
        w.typed(b"\x1b[A");
        w.output(b"\r$ cat /etc/hosts");
        assert!(!w.shows_keys());
    }

    #[test]
    fn a_fresh_prompt_is_told_from_a_kept_line() {
        let mut w = LineWatch::new(80, 24);
        w.output(b"me@h:~$ ");
        w.typed(b"rm -rf /x");
        w.output(b"rm -rf /x");
        let prompt = w.entered().prompt;
        // The shell kept the line (Ctrl-C ignored, shown as ^C).
        w.output(b"^C");
        assert!(!w.at_fresh_prompt(&prompt));
        // The shell let go: a new prompt on a new row.
        w.output(b"\r\nme@h:~$ ");
        assert!(w.at_fresh_prompt(&prompt));
    }

    #[test]
    fn keys_typed_without_echo_are_kept() {
        let mut w = LineWatch::new(80, 24);
        w.output(b"$ ");
        w.typed(b"rm -rf /tmpX\x7f \x1b[D/");
        assert!(!w.echoed());
        let e = w.entered();
        // Edited with nothing shown: what the shell holds is unknowable.
        assert!(matches!(e.shown, Shown::Unreadable(_)));
        assert_eq!(e.keys, "rm -rf /tmp /");
        // Plain typing with echo off: judged by its keys.
        w.typed(b"rm -rf /x");
        let e = w.entered();
        assert_eq!(
            (e.shown, e.keys.as_str()),
            (Shown::Line(String::new()), "rm -rf /x")
        );
        // History recall with echo off (no keys, one escape sequence).
        w.typed(b"\x1b[A");
        assert!(matches!(w.entered().shown, Shown::Unreadable(_)));
    }

    #[test]
    fn candidates_cover_each_row_and_what_follows_a_prompt() {
        assert_eq!(
            candidates("output$ rm -rf /\nls"),
            Some(vec![
                "output$ rm -rf /".to_string(),
                "rm -rf /".into(),
                "ls".into()
            ])
        );
        assert_eq!(candidates(&"$ ".repeat(30_000)), None, "too many readings");
        assert_eq!(
            split_enter(b"ab\rc\r\n"),
            vec![
                (&b"ab"[..], Some(b'\r')),
                (&b"c"[..], Some(b'\r')),
                (&b""[..], Some(b'\n'))
            ]
        );
    }
}
