//! Keys from the bytes a terminal sends.
//!
//! The console reads raw bytes — from the local tty in raw mode, or from
//! an SSH channel — so it decodes keys itself, the same way for both. Like
//! a wire codec it has no I/O: [`decode`] takes what has arrived and
//! returns a key, `None` when a sequence is still incomplete, and skips
//! what it does not know. Only what VT100, the Linux console and xterm
//! send for the keys the console uses is understood.

/// A key the console acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Esc,
    Backspace,
    Tab,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    /// Ctrl-C: leave, from anywhere.
    Interrupt,
    /// Ctrl-L: redraw the whole screen.
    Redraw,
}

/// What [`decode`] found at the front of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A key, and how many bytes it took.
    Key(Key, usize),
    /// Bytes that mean nothing to the console (an unknown sequence, a
    /// control character): skip them.
    Skip(usize),
    /// A sequence has started and not finished; wait for more (or, after
    /// a moment of silence, take a lone ESC as the Esc key).
    Incomplete,
}

/// Longest escape sequence worth waiting for; anything longer is skipped.
const MAX_SEQUENCE: usize = 16;

/// Decode the key at the front of `input` (which must not be empty).
pub fn decode(input: &[u8]) -> Decoded {
    let Some(&first) = input.first() else {
        return Decoded::Incomplete;
    };
    match first {
        0x1b => escape(input),
        b'\r' | b'\n' => Decoded::Key(Key::Enter, 1),
        0x7f | 0x08 => Decoded::Key(Key::Backspace, 1),
        b'\t' => Decoded::Key(Key::Tab, 1),
        0x03 => Decoded::Key(Key::Interrupt, 1),
        0x0c => Decoded::Key(Key::Redraw, 1),
        0x0e => Decoded::Key(Key::Down, 1), // Ctrl-N
        0x10 => Decoded::Key(Key::Up, 1),   // Ctrl-P
        0x00..=0x1f => Decoded::Skip(1),
        _ => utf8(input),
    }
}

/// The Esc key when a lone ESC is all that came (after a pause).
pub fn lone_escape(input: &[u8]) -> bool {
    input == [0x1b]
}

fn utf8(input: &[u8]) -> Decoded {
    let len = match input[0] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return Decoded::Skip(1),
    };
    if input.len() < len {
        return Decoded::Incomplete;
    }
    match std::str::from_utf8(&input[..len])
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(c) => Decoded::Key(Key::Char(c), len),
        None => Decoded::Skip(1),
    }
}

fn escape(input: &[u8]) -> Decoded {
    let Some(&second) = input.get(1) else {
        return Decoded::Incomplete;
    };
    match second {
        // CSI: ESC [ params final
        b'[' => {
            let Some(end) = input[2..].iter().position(|b| (0x40..=0x7e).contains(b)) else {
                return if input.len() >= MAX_SEQUENCE {
                    Decoded::Skip(input.len())
                } else {
                    Decoded::Incomplete
                };
            };
            let len = 2 + end + 1;
            let params = &input[2..2 + end];
            let key = match (input[2 + end], params) {
                (b'A', _) => Some(Key::Up),
                (b'B', _) => Some(Key::Down),
                (b'C', _) => Some(Key::Right),
                (b'D', _) => Some(Key::Left),
                (b'H', _) => Some(Key::Home),
                (b'F', _) => Some(Key::End),
                (b'~', b"1" | b"7") => Some(Key::Home),
                (b'~', b"4" | b"8") => Some(Key::End),
                (b'~', b"5") => Some(Key::PageUp),
                (b'~', b"6") => Some(Key::PageDown),
                _ => None,
            };
            key.map_or(Decoded::Skip(len), |k| Decoded::Key(k, len))
        }
        // SS3 (application cursor mode, VT100 keypad): ESC O final
        b'O' => match input.get(2) {
            None => Decoded::Incomplete,
            Some(b'A') => Decoded::Key(Key::Up, 3),
            Some(b'B') => Decoded::Key(Key::Down, 3),
            Some(b'C') => Decoded::Key(Key::Right, 3),
            Some(b'D') => Decoded::Key(Key::Left, 3),
            Some(b'H') => Decoded::Key(Key::Home, 3),
            Some(b'F') => Decoded::Key(Key::End, 3),
            Some(b'M') => Decoded::Key(Key::Enter, 3),
            Some(_) => Decoded::Skip(3),
        },
        // ESC ESC: the first is an Esc on its own.
        0x1b => Decoded::Key(Key::Esc, 1),
        // Alt+key and the like: not used; take ESC as Esc, the key follows.
        _ => Decoded::Key(Key::Esc, 1),
    }
}

/// Decode every complete key in `input`, leaving an incomplete sequence
/// at its front for the next read.
pub fn decode_all(input: &mut Vec<u8>) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut at = 0;
    while at < input.len() {
        match decode(&input[at..]) {
            Decoded::Key(k, n) => {
                keys.push(k);
                at += n;
            }
            Decoded::Skip(n) => at += n,
            Decoded::Incomplete => break,
        }
    }
    input.drain(..at);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> (Vec<Key>, Vec<u8>) {
        let mut input = bytes.to_vec();
        let keys = decode_all(&mut input);
        (keys, input)
    }

    #[test]
    fn what_vt100_linux_and_xterm_send() {
        assert_eq!(
            keys(b"\x1b[A\x1bOB\x1b[5~\x1b[6~\x1b[1~\x1b[4~\x1b[H\x1bOF").0,
            [
                Key::Up,
                Key::Down,
                Key::PageUp,
                Key::PageDown,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End
            ]
        );
        assert_eq!(
            keys(b"jk/\r\x7f\x03").0,
            [
                Key::Char('j'),
                Key::Char('k'),
                Key::Char('/'),
                Key::Enter,
                Key::Backspace,
                Key::Interrupt
            ]
        );
        assert_eq!(keys("é".as_bytes()).0, [Key::Char('é')]);
    }

    #[test]
    fn incomplete_sequences_wait_and_unknown_ones_are_skipped() {
        assert_eq!(keys(b"a\x1b[1"), (vec![Key::Char('a')], b"\x1b[1".to_vec()));
        assert_eq!(keys(b"\x1b"), (vec![], b"\x1b".to_vec()));
        assert!(lone_escape(b"\x1b"));
        assert_eq!(keys(b"\xc3"), (vec![], b"\xc3".to_vec()));
        // F5 and friends mean nothing here.
        assert_eq!(keys(b"\x1b[15~\x1b[1;5Cq").0, [Key::Right, Key::Char('q')]);
        assert_eq!(keys(b"\x1b\x1b[A").0, [Key::Esc, Key::Up]);
        // A runaway sequence does not hold input forever.
        let (k, rest) = keys(&[b"\x1b[".as_slice(), &[b'1'; 20]].concat());
        assert!(k.is_empty() && rest.is_empty());
    }
}
