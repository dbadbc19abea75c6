//! Byte classes: one table lookup tells whether a byte is a digit, a letter, hex,
//! part of an e-mail local part or domain label, or part of a secret token.

pub(super) const DIGIT: u8 = 1;
pub(super) const UPPER: u8 = 2;
pub(super) const LOWER: u8 = 4;
/// E-mail local part: alnum, `._%+-`, non-ASCII.
pub(super) const LOCAL: u8 = 8;
/// E-mail domain label: alnum, `-`, non-ASCII.
pub(super) const DOMAIN: u8 = 16;
/// Secret token: alnum, `+/_-`.
pub(super) const TOKEN: u8 = 32;
pub(super) const HEX: u8 = 64;
pub(super) const HIGH: u8 = 128;
pub(super) const ALPHA: u8 = UPPER | LOWER;
pub(super) const ALNUM: u8 = DIGIT | ALPHA;

static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0usize;
    while i < 256 {
        let b = i as u8;
        let mut c = 0u8;
        if b.is_ascii_digit() {
            c |= DIGIT | LOCAL | DOMAIN | TOKEN | HEX;
        }
        if b.is_ascii_uppercase() {
            c |= UPPER | LOCAL | DOMAIN | TOKEN;
            if b <= b'F' {
                c |= HEX;
            }
        }
        if b.is_ascii_lowercase() {
            c |= LOWER | LOCAL | DOMAIN | TOKEN;
            if b <= b'f' {
                c |= HEX;
            }
        }
        if b >= 0x80 {
            c |= HIGH | LOCAL | DOMAIN;
        }
        match b {
            b'.' | b'_' | b'%' | b'+' => c |= LOCAL,
            b'-' => c |= LOCAL | DOMAIN,
            _ => {}
        }
        if matches!(b, b'+' | b'/' | b'_' | b'-') {
            c |= TOKEN;
        }
        t[i] = c;
        i += 1;
    }
    t
}

#[inline(always)]
pub(super) fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

#[inline(always)]
pub(super) fn is_digit(b: u8) -> bool {
    b.wrapping_sub(b'0') < 10
}
