//! Binary COPY format: the header, tuples and trailer parsed across feeds;
//! a masked field becomes NULL.

use super::{CopyMasker, Decision, MaskError, MaskStats};

impl<'m> CopyMasker<'m> {
    pub(super) fn feed_binary(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        stats: &mut MaskStats,
    ) -> Result<(), MaskError> {
        if self.pending.is_empty() {
            let used = self.process_binary(data, out, stats)?;
            self.pending.extend_from_slice(&data[used..]);
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() < self.bin.need {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.pending);
        let res = self.process_binary(&buf, out, stats);
        if let Ok(used) = res {
            buf.drain(..used);
        }
        self.pending = buf;
        res.map(|_| ())
    }

    /// Parse as many complete header/tuple/trailer units of `buf` as possible,
    /// appending their (masked) bytes to `out`. Returns the bytes consumed.
    fn process_binary(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        stats: &mut MaskStats,
    ) -> Result<usize, MaskError> {
        const SIG: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
        let mut pos = 0usize;
        self.bin.need = 0;
        if !self.bin.header_done {
            let k = buf.len().min(11);
            if buf[..k] != SIG[..k] {
                return Err(MaskError::Copy("bad signature"));
            }
            let (Some(flags), Some(ext)) = (read_i32(buf, 11), read_i32(buf, 15)) else {
                self.bin.need = 19;
                return Ok(0);
            };
            let flags = flags as u32;
            if flags & 0xfffe_0000 != 0 {
                return Err(MaskError::Copy("unknown critical header flags"));
            }
            let ext = usize::try_from(ext)
                .map_err(|_| MaskError::Copy("negative header extension length"))?;
            let end = 19 + ext;
            if buf.len() < end {
                self.bin.need = end;
                return Ok(0);
            }
            out.extend_from_slice(&buf[..end]);
            pos = end;
            self.bin.header_done = true;
            self.bin.has_oids = flags & (1 << 16) != 0;
        }
        loop {
            if pos >= buf.len() {
                return Ok(pos);
            }
            if self.bin.trailer_seen {
                return Err(MaskError::Copy("data after trailer"));
            }
            let Some(count) = buf
                .get(pos..pos + 2)
                .map(|s| i16::from_be_bytes([s[0], s[1]]))
            else {
                self.bin.need = 2;
                return Ok(pos);
            };
            if count == -1 {
                out.extend_from_slice(&buf[pos..pos + 2]);
                pos += 2;
                self.bin.trailer_seen = true;
                continue;
            }
            if count < 0 {
                return Err(MaskError::Copy("negative field count"));
            }
            let nf = count as usize + usize::from(self.bin.has_oids);
            let mut q = pos + 2;
            for _ in 0..nf {
                let Some(len) = read_i32(buf, q) else {
                    self.bin.need = q + 4 - pos;
                    return Ok(pos);
                };
                q += 4;
                if len == -1 {
                    continue;
                }
                let len =
                    usize::try_from(len).map_err(|_| MaskError::Copy("invalid field length"))?;
                let end = q + len;
                if end > buf.len() {
                    self.bin.need = end - pos;
                    return Ok(pos);
                }
                q = end;
            }
            self.mask_tuple(&buf[pos..q], nf, out, stats);
            pos = q;
        }
    }

    /// `tuple` is complete and validated; masked fields become NULL.
    fn mask_tuple(&mut self, tuple: &[u8], nf: usize, out: &mut Vec<u8>, stats: &mut MaskStats) {
        let mut copied = 0;
        let mut q = 2;
        for fi in 0..nf {
            let Some(len) = read_i32(tuple, q) else { break };
            let vs = q + 4;
            if len < 0 {
                q = vs;
                continue;
            }
            let ve = vs + len as usize;
            let idx = if self.bin.has_oids {
                if fi == 0 {
                    q = ve;
                    continue;
                }
                fi - 1
            } else {
                fi
            };
            let col = self.plan.col(idx);
            let d = self
                .masker
                .decide(col, true, &tuple[vs..ve], &mut self.scratch.hits, stats);
            if d != Decision::Unchanged {
                out.extend_from_slice(&tuple[copied..q]);
                out.extend_from_slice(&(-1i32).to_be_bytes());
                copied = ve;
            }
            q = ve;
        }
        out.extend_from_slice(&tuple[copied..]);
    }
}

#[inline]
fn read_i32(b: &[u8], pos: usize) -> Option<i32> {
    let s = b.get(pos..pos.checked_add(4)?)?;
    Some(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
