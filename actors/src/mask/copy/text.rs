//! Text-format fields: where one ends, and its escapes undone and redone.

use memchr::{memchr, memchr2};

/// End of the text-format field starting at `start`: the next delimiter
/// that is not escaped, or the row's end. PostgreSQL writes a delimiter
/// inside a value as backslash + delimiter (any delimiter but the default
/// tab, which it writes as `\t`), so a bare search would split the value
/// and shift every later field onto another column's rule.
pub(super) fn text_field_end(row: &[u8], start: usize, delim: u8) -> usize {
    let mut i = start;
    while let Some(k) = memchr2(b'\\', delim, &row[i..]) {
        let p = i + k;
        if row[p] == delim {
            return p;
        }
        // A backslash escapes the byte after it, whatever it is.
        i = p + 2;
        if i >= row.len() {
            return row.len();
        }
    }
    row.len()
}

/// Undo COPY text escapes (`\b \f \n \r \t \v \\`, octal `\NNN`, hex `\xHH`,
/// backslash + other char → that char).
pub(super) fn decode_text(f: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(k) = memchr(b'\\', &f[i..]) {
        let p = i + k;
        out.extend_from_slice(&f[i..p]);
        let Some(&c) = f.get(p + 1) else {
            out.push(b'\\');
            return;
        };
        i = p + 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut val = u32::from(c - b'0');
                while i < p + 4 && i < f.len() && (b'0'..=b'7').contains(&f[i]) {
                    val = val * 8 + u32::from(f[i] - b'0');
                    i += 1;
                }
                out.push((val & 0xff) as u8);
            }
            b'x' if f.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut val = 0u32;
                while i < p + 4 && i < f.len() && f[i].is_ascii_hexdigit() {
                    val = val * 16 + (f[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                }
                out.push(val as u8);
            }
            _ => out.push(c),
        }
    }
    out.extend_from_slice(&f[i..]);
}

/// Escape a value for COPY text format.
pub(super) fn encode_text(v: &[u8], delim: u8, out: &mut Vec<u8>) {
    for &b in v {
        let esc = match b {
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            8 => b'b',
            12 => b'f',
            11 => b'v',
            _ if b == delim => b,
            _ => {
                out.push(b);
                continue;
            }
        };
        out.push(b'\\');
        out.push(esc);
    }
}
