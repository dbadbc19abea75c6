//! The relay: two pumps, one per direction, running concurrently inside the
//! session actor's context.
//!
//! Each pump reads what is available, walks the complete frames in place
//! (length checks, recording taps), sends the batch's events to the recorder
//! *before* forwarding, then writes the whole batch with one write. Bytes
//! are never copied or re-encoded. Directions are independent, so a client
//! that stops reading slows only its own results and cannot deadlock the
//! other direction. A stop signal (kill, shutdown, the other pump's
//! failure) is checked between batches, never in the middle of a frame, so
//! the final ErrorResponse is always a whole message.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::codec::{self, HEADER_LEN};
use super::stream::PgStream;
use super::tap::{ClientTap, TargetTap};
use crate::error::SessionError;
use crate::recorder::{RecorderHandle, RecorderMsg};
use crate::recording::RecordingId;

/// Read buffer reserve: big enough that a typical result arrives in one
/// read, small enough that 10,000 idle sessions stay cheap (the buffer only
/// grows while data flows).
const READ_CHUNK: usize = 16 << 10;

/// Why the relay is being stopped from outside a pump.
#[derive(Debug, Clone)]
pub enum Stop {
    /// The client pump ended normally (Terminate or EOF).
    ClientDone,
    /// The client sent something invalid; tell it (08P01) and end.
    ClientError {
        sqlstate: &'static str,
        message: String,
    },
    /// An operator or the shutdown path ended the session.
    Terminated(String),
}

/// How the client pump ended.
enum UpEnd {
    /// The client sent Terminate or closed its side.
    Done,
    /// A stop signal arrived; the target pump acts on it.
    Stopped,
}

/// How the relay ended.
pub enum RelayEnd {
    /// Client said Terminate or closed, target followed.
    Closed,
    Failed(SessionError),
}

pub struct Relay {
    pub id: RecordingId,
    pub connection: String,
    pub recorder: RecorderHandle,
    pub client_frames: codec::FrameLimits,
    pub max_target_message_bytes: usize,
    pub rows_per_statement: u64,
    /// Forward client statements only once their events are durable.
    pub strict: bool,
}

impl Relay {
    pub async fn run(
        self,
        client: PgStream,
        client_buf: BytesMut,
        target: PgStream,
        target_buf: BytesMut,
        stop_tx: std::rc::Rc<watch::Sender<Option<Stop>>>,
    ) -> RelayEnd {
        let (client_rd, client_wr) = tokio::io::split(client);
        let (target_rd, target_wr) = tokio::io::split(target);
        let mut stop_rx = stop_tx.subscribe();
        // A kill that arrived while the session was still connecting is
        // already the current value; make the pumps see it.
        if stop_rx.borrow().is_some() {
            stop_rx.mark_changed();
        }
        let up = self.client_to_target(client_rd, client_buf, target_wr, stop_rx.clone());
        let down = self.target_to_client(target_rd, target_buf, client_wr, stop_rx);
        tokio::pin!(up, down);
        tokio::select! {
            up_end = &mut up => {
                // A pump that ended because of a stop signal must not replace
                // that signal: the target pump still has to act on it.
                let signal = match &up_end {
                    Ok(UpEnd::Done) => Some(Stop::ClientDone),
                    Ok(UpEnd::Stopped) => None,
                    Err(e) => Some(Stop::ClientError { sqlstate: e.sqlstate(), message: e.client_message() }),
                };
                // Never replace a Terminated that is already pending: the
                // kill must reach the client and the recording.
                if let Some(signal) = signal {
                    stop_tx.send_if_modified(|current| {
                        if matches!(current, Some(Stop::Terminated(_))) {
                            false
                        } else {
                            *current = Some(signal);
                            true
                        }
                    });
                }
                let down_end = down.await;
                match (up_end, down_end) {
                    (Err(e), _) | (Ok(_), Err(e)) => RelayEnd::Failed(e),
                    (Ok(_), Ok(())) => RelayEnd::Closed,
                }
            }
            down_end = &mut down => {
                // The target side ended first (target closed, client gone,
                // or terminated); the client pump has nothing left to do.
                match down_end {
                    Ok(()) => RelayEnd::Closed,
                    Err(e) => RelayEnd::Failed(e),
                }
            }
        }
    }

    async fn flush_events(&self, events: &mut Vec<crate::recorder::PendingEvent>) {
        if !events.is_empty() {
            self.recorder
                .send(RecorderMsg::Events(self.id, std::mem::take(events)))
                .await;
        }
    }

    /// Client → target. Ends on Terminate, EOF or a stop signal.
    async fn client_to_target(
        &self,
        mut rd: ReadHalf<PgStream>,
        mut buf: BytesMut,
        mut wr: WriteHalf<PgStream>,
        mut stop: watch::Receiver<Option<Stop>>,
    ) -> Result<UpEnd, SessionError> {
        let mut tap = ClientTap::default();
        let lost = |e: std::io::Error| SessionError::TargetLost {
            connection: self.connection.clone(),
            detail: e.to_string(),
        };
        loop {
            let mut end = 0;
            let mut terminate = false;
            tap.batch.stamp();
            while let Some(len) = codec::frame_len_limited(&buf[end..], &self.client_frames)? {
                let tag = buf[end];
                tap.observe(tag, &buf[end + HEADER_LEN..end + len])?;
                end += len;
                if tag == b'X' {
                    terminate = true;
                    break;
                }
            }
            if self.strict && !tap.batch.events.is_empty() {
                let events = std::mem::take(&mut tap.batch.events);
                self.recorder
                    .record_durably(self.id, events)
                    .await
                    .map_err(SessionError::RecordingFailed)?;
            } else {
                self.flush_events(&mut tap.batch.events).await;
            }
            if end > 0 {
                wr.write_all(&buf[..end]).await.map_err(lost)?;
                wr.flush().await.map_err(lost)?;
                buf.advance(end);
            }
            if terminate {
                return Ok(UpEnd::Done);
            }
            reserve_for_next(&mut buf);
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(UpEnd::Stopped),
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) => {
                        // The client vanished without Terminate: say it for
                        // them so the target ends its backend now.
                        let _ = wr.write_all(b"X\0\0\0\x04").await;
                        let _ = wr.flush().await;
                        return Ok(UpEnd::Done);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(SessionError::ClientIo(e)),
                },
            }
        }
    }

    /// Target → client. Ends when the target closes or a stop arrives; on a
    /// stop with a message it sends the client a final ErrorResponse.
    async fn target_to_client(
        &self,
        mut rd: ReadHalf<PgStream>,
        mut buf: BytesMut,
        mut wr: WriteHalf<PgStream>,
        mut stop: watch::Receiver<Option<Stop>>,
    ) -> Result<(), SessionError> {
        let mut tap = TargetTap::new(self.rows_per_statement);
        let mut client_done = false;
        // Set if the stop sender is gone, so a closed channel is not polled
        // in a loop.
        let mut stop_closed = false;
        loop {
            let mut end = 0;
            tap.batch.stamp();
            loop {
                let len = match codec::frame_len(&buf[end..], self.max_target_message_bytes) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(e) => {
                        let err = SessionError::TargetFailed {
                            connection: self.connection.clone(),
                            detail: e.to_string(),
                        };
                        let _ = send_fatal(&mut wr, err.sqlstate(), &err.client_message()).await;
                        return Err(err);
                    }
                };
                tap.observe(buf[end], &buf[end + HEADER_LEN..end + len]);
                end += len;
            }
            self.flush_events(&mut tap.batch.events).await;
            if end > 0 {
                wr.write_all(&buf[..end])
                    .await
                    .map_err(SessionError::ClientIo)?;
                wr.flush().await.map_err(SessionError::ClientIo)?;
                buf.advance(end);
            }
            reserve_for_next(&mut buf);
            tokio::select! {
                biased;
                changed = stop.changed(), if !stop_closed => {
                    stop_closed = changed.is_err();
                    let signal = if changed.is_ok() { stop.borrow_and_update().clone() } else { None };
                    match signal {
                        // The client is done sending; keep relaying until the
                        // target closes (it does after Terminate or EOF).
                        Some(Stop::ClientDone) => client_done = true,
                        None => {}
                        Some(Stop::ClientError { sqlstate, message }) => {
                            let _ = send_fatal(&mut wr, sqlstate, &message).await;
                            return Ok(());
                        }
                        Some(Stop::Terminated(why)) => {
                            let err = SessionError::Terminated(why);
                            let _ = send_fatal(&mut wr, err.sqlstate(), &err.client_message()).await;
                            return Err(err);
                        }
                    }
                }
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) if client_done => return Ok(()),
                    Ok(0) => {
                        let err = SessionError::TargetLost {
                            connection: self.connection.clone(),
                            detail: "target closed the connection".into(),
                        };
                        let _ = send_fatal(&mut wr, err.sqlstate(), &err.client_message()).await;
                        return Err(err);
                    }
                    Ok(_) => {}
                    Err(_) if client_done => return Ok(()),
                    Err(e) => {
                        let err = SessionError::TargetLost {
                            connection: self.connection.clone(),
                            detail: e.to_string(),
                        };
                        let _ = send_fatal(&mut wr, err.sqlstate(), &err.client_message()).await;
                        return Err(err);
                    }
                },
            }
        }
    }
}

/// Make room for the next read: at least `READ_CHUNK`, or the rest of a
/// frame whose header says it is larger (already bounded by `frame_len`).
fn reserve_for_next(buf: &mut BytesMut) {
    let mut want = READ_CHUNK;
    if buf.len() >= HEADER_LEN {
        let declared = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if declared > 0 {
            want = want.max(declared as usize + 1 - buf.len().min(declared as usize + 1));
        }
    }
    buf.reserve(want);
}

/// A client that does not read gets this long to take its final error.
const FATAL_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn send_fatal(
    wr: &mut WriteHalf<PgStream>,
    sqlstate: &str,
    message: &str,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    codec::put_error(&mut out, b'E', "FATAL", sqlstate, message);
    let write = async {
        wr.write_all(&out).await?;
        wr.flush().await?;
        wr.shutdown().await
    };
    tokio::time::timeout(FATAL_WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}
