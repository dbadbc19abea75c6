//! Masking a byte stream (an SSH terminal's output, a command's stdout)
//! that arrives in pieces cut anywhere.
//!
//! A secret may be split across two packets, so the end of what arrived is
//! held back until it is known not to be the beginning of a match: output
//! is released up to the last line break, an unfinished line is held (at
//! most [`MAX_HOLD`] bytes; beyond that all but the last [`OVERLAP`]
//! bytes go), and the caller releases the rest with [`StreamMasker::flush`]
//! when the stream pauses. Detectors run over everything held, so a match
//! that ends in the held tail is masked whole once it is complete; a cut
//! never falls inside a match. Bytes outside matches — escape sequences
//! included — pass unchanged.

use memchr::memrchr;

use super::{MaskStats, Masker};

/// Longest unfinished line held back: a prompt or progress bar without a
/// newline is released in pieces beyond this.
pub const MAX_HOLD: usize = 16 << 10;

/// What stays held when an unfinished line is released in pieces: longer
/// than any detector's match except PEM blocks (which match to the end of
/// what is there, so a partial one is masked too).
pub const OVERLAP: usize = 512;

pub struct StreamMasker {
    masker: &'static Masker,
    held: Vec<u8>,
    pub stats: MaskStats,
}

impl StreamMasker {
    pub fn new(masker: &'static Masker) -> Self {
        StreamMasker {
            masker,
            held: Vec::new(),
            stats: MaskStats::default(),
        }
    }

    /// Take `data`; returns what may be sent now, masked.
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(data);
        let line_end = memrchr(b'\n', &self.held).map_or(0, |i| i + 1);
        let cut = if self.held.len() - line_end <= MAX_HOLD {
            line_end
        } else {
            self.held.len() - OVERLAP
        };
        self.release(cut)
    }

    /// Release everything held (the stream paused or ended).
    pub fn flush(&mut self) -> Vec<u8> {
        self.release(self.held.len())
    }

    /// Whether anything waits for [`flush`](Self::flush).
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    fn release(&mut self, mut cut: usize) -> Vec<u8> {
        if cut == 0 {
            return Vec::new();
        }
        let mut hits = Vec::new();
        if self.masker.find_hits(&self.held, &mut hits).is_none() {
            return self.held.drain(..cut).collect();
        }
        // Never cut inside a match: hold it back whole.
        if cut < self.held.len() {
            for h in &hits {
                if h.start < cut && h.end > cut {
                    cut = h.start;
                }
            }
        }
        hits.retain(|h| h.end <= cut);
        self.masker.count_hits(&hits, &mut self.stats);
        let mut out = Vec::with_capacity(cut + 16);
        self.masker.render_spans(&self.held[..cut], &hits, &mut out);
        self.held.drain(..cut);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{MaskRule, Strategy};

    fn masker() -> &'static Masker {
        Box::leak(Box::new(
            Masker::new(
                vec![MaskRule {
                    name: "pii".into(),
                    columns: vec![],
                    detectors: vec!["email".into(), "credit_card".into()],
                    regex: vec![],
                    strategy: Strategy::Redact,
                }],
                [7; 32],
            )
            .unwrap(),
        ))
    }

    #[test]
    fn a_secret_split_anywhere_is_masked_and_escapes_pass() {
        let text = b"\x1b[32mcard\x1b[0m 4242 4242 4242 4242 mail alice@example.com\r\nnext\r\n";
        for cut in 0..text.len() {
            let mut m = StreamMasker::new(masker());
            let mut out = m.feed(&text[..cut]);
            out.extend(m.feed(&text[cut..]));
            out.extend(m.flush());
            let out = String::from_utf8(out).unwrap();
            assert_eq!(
                out, "\x1b[32mcard\x1b[0m [redacted] mail [redacted]\r\nnext\r\n",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn held_back_is_bounded() {
        let mut m = StreamMasker::new(masker());
        let out = m.feed(&vec![b'x'; MAX_HOLD * 3]);
        assert_eq!(out.len(), MAX_HOLD * 3 - OVERLAP);
        assert!(m.holding());
        assert_eq!(m.flush().len(), OVERLAP);
        assert!(!m.holding());
    }

    #[test]
    fn complete_lines_go_out_at_once() {
        let mut m = StreamMasker::new(masker());
        assert_eq!(m.feed(b"ok\r\nprompt$ "), b"ok\r\n");
        assert_eq!(m.flush(), b"prompt$ ");
    }
}
