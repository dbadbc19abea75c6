//! Target `ssh_line`: the interactive-shell line reader (`ssh::line`) on a
//! terminal driven by a model shell, and on arbitrary output.
//!
//! The first byte picks the terminal's width (20–83 columns) and height
//! (3–18 rows). Each following byte is a key (printable ASCII, backspace,
//! Ctrl-U, Enter) for a model line editor that echoes as a real shell does
//! (`\b \b` for backspace, a redraw for Ctrl-U, `\r\n$ ` after Enter), or,
//! with its top bit set, a burst of arbitrary output before the next key.
//! Invariants:
//! - with only the model's echo on the screen, the line read at Enter is
//!   exactly the model's line (the command the shell would run), however
//!   it wrapped and scrolled; or, when its start scrolled off the screen,
//!   it is refused as unreadable, never read as something else;
//! - the keys the reader kept are the model's line too (echo or not);
//! - after arbitrary output, nothing panics and any line read has no
//!   control characters; the model then resets the terminal (a line
//!   typed after output that left it mid-escape shows differently on a
//!   real terminal too: the first long run found exactly that).

use gatehouse_actors::ssh::line::{LineWatch, Shown};

pub fn check(data: &[u8]) {
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    let cols = 20 + u32::from(size & 0x3f);
    let rows = 3 + u32::from(size >> 4);
    let mut w = LineWatch::new(cols, rows);
    w.output(b"$ ");
    let mut line: Vec<u8> = Vec::new();
    // Whether arbitrary output touched the screen since the last Enter.
    let mut disturbed = false;
    let mut iter = rest.iter();
    while let Some(&b) = iter.next() {
        if b & 0x80 != 0 {
            let n = usize::from(b & 0x0f);
            let noise: Vec<u8> = iter.by_ref().take(n).copied().collect();
            w.output(&noise);
            disturbed = true;
            continue;
        }
        match b {
            b'\r' | b'\n' => {
                let entered = w.entered();
                let expected = String::from_utf8_lossy(&line).into_owned();
                assert_eq!(entered.keys, expected, "keys kept");
                match entered.shown {
                    Shown::Line(shown) => {
                        assert!(
                            !shown.chars().any(|c| c.is_control() && c != '\n'),
                            "{shown:?}"
                        );
                        if !disturbed {
                            assert_eq!(shown.trim_end(), expected.trim_end(), "line read");
                        }
                    }
                    Shown::Unreadable(_) => {}
                }
                line.clear();
                // Output can leave the terminal mid-escape or in another
                // mode (insert, origin, scroll region), which a real
                // terminal would show too; after it, the model resets the
                // terminal (cancel, full reset) so the next line is judged
                // against a clean screen again.
                if disturbed {
                    w.output(b"\x18\x1bc$ ");
                } else {
                    w.output(b"\r\n$ ");
                }
                disturbed = false;
            }
            0x7f => {
                w.typed(&[b]);
                let before = line.len();
                if line.pop().is_some() {
                    // Within a row `\b \b`; across a wrap (a terminal's
                    // backspace does not go up a row) the line is redrawn,
                    // as readline does.
                    if (before + 2).is_multiple_of(cols as usize)
                        || (before + 1).is_multiple_of(cols as usize)
                    {
                        w.output(&redraw(before, &line, cols));
                    } else {
                        w.output(b"\x08 \x08");
                    }
                }
            }
            0x15 => {
                w.typed(&[b]);
                w.output(&redraw(line.len(), b"", cols));
                line.clear();
            }
            0x20..=0x7e => {
                w.typed(&[b]);
                line.push(b);
                w.output(&[b]);
            }
            _ => {}
        }
    }
}

/// Redraw the prompt and `line` from the prompt's row, the cursor being at
/// the end of a line of `shown` characters (after `$ `).
fn redraw(shown: usize, line: &[u8], cols: u32) -> Vec<u8> {
    // With the cursor just past the last column the terminal waits to
    // wrap: it is still on the row of that column.
    let up = (shown + 2).saturating_sub(1) / cols as usize;
    let mut out = b"\r".to_vec();
    if up > 0 {
        out.extend_from_slice(format!("\x1b[{up}A").as_bytes());
    }
    out.extend_from_slice(b"\x1b[J$ ");
    out.extend_from_slice(line);
    out
}
