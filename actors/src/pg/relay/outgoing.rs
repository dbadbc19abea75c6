//! A batch as the pumps write it: zero-copy unless a frame was replaced,
//! counted as relayed bytes.

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, WriteHalf};

use crate::metrics::{self, Flow};
use crate::pg::stream::PgStream;

/// A batch as it goes out: the bytes as read, with any replaced frames
/// swapped in. Zero-copy unless something was replaced.
pub(super) struct Outgoing {
    /// buf[..written] is already out (or copied into `assembled`).
    written: usize,
    assembled: BytesMut,
    /// Which way, for the relayed-bytes counter.
    flow: Flow,
}

impl Outgoing {
    pub(super) fn new(flow: Flow) -> Self {
        Outgoing {
            written: 0,
            assembled: BytesMut::new(),
            flow,
        }
    }

    /// Frame buf[at..at+len] is replaced by `with`.
    pub(super) fn replace(&mut self, buf: &[u8], at: usize, len: usize, with: &[u8]) {
        self.assembled.extend_from_slice(&buf[self.written..at]);
        self.assembled.extend_from_slice(with);
        self.written = at + len;
    }

    /// Write everything up to buf[..upto].
    pub(super) async fn write_until(
        &mut self,
        buf: &[u8],
        upto: usize,
        wr: &mut WriteHalf<PgStream>,
    ) -> std::io::Result<()> {
        if self.assembled.is_empty() {
            if upto > self.written {
                wr.write_all(&buf[self.written..upto]).await?;
                metrics::relayed("postgres", self.flow, (upto - self.written) as u64);
            }
        } else {
            self.assembled
                .extend_from_slice(&buf[self.written.min(upto)..upto]);
            wr.write_all(&self.assembled).await?;
            metrics::relayed("postgres", self.flow, self.assembled.len() as u64);
            self.assembled.clear();
        }
        self.written = self.written.max(upto);
        wr.flush().await
    }
}
