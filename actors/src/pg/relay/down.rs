//! The target pump (target → client): frames recorded, results masked,
//! refused statements' errors rewritten for the client, and a final
//! ErrorResponse when the relay is stopped or the target fails.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::{Outgoing, Relay, Stop, reserve_for_next};
use crate::error::SessionError;
use crate::metrics::Flow;
use crate::pg::codec::{self, HEADER_LEN};
use crate::pg::encoding::SessionEncoding;
use crate::pg::filter::ResultFilter;
use crate::pg::gate::SharedRef;
use crate::pg::stream::PgStream;
use crate::pg::tap::TargetTap;
use crate::recording::{Direction, EventKind};

impl Relay {
    /// Target → client. Ends when the target closes or a stop arrives; on a
    /// stop with a message it sends the client a final ErrorResponse.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn target_to_client(
        &self,
        mut rd: ReadHalf<PgStream>,
        mut buf: BytesMut,
        mut wr: WriteHalf<PgStream>,
        stop: watch::Receiver<Option<Stop>>,
        shared: SharedRef,
        notify: std::rc::Rc<tokio::sync::Notify>,
        encoding: SessionEncoding,
    ) -> Result<(), SessionError> {
        let mut tap = TargetTap::new(self.rows_per_statement, encoding);
        let mut filter = self.policy.as_ref().and_then(|p| {
            p.policy.masker.map(|m| {
                ResultFilter::new(
                    m,
                    p.target.catalog.clone(),
                    p.target.clone(),
                    shared.clone(),
                )
            })
        });
        let gated = self.policy.is_some();
        let mut client_done = false;
        // The SQLSTATE of a FATAL the target sent: it is about to close,
        // and the client has its reason already.
        let mut target_fatal: Option<String> = None;
        // Set if the stop sender is gone, so a closed channel is not polled
        // in a loop.
        let mut stop_closed = false;
        // The waits for a stop and for the client pump's notices last
        // across batches (remade only once they fire): making and dropping
        // them for every batch took locks each time.
        let mut stopped = std::pin::pin!(next_stop(stop));
        let mut notified = std::pin::pin!(notify.notified());
        loop {
            let mut end = 0;
            let mut out = Outgoing::new(Flow::ToClient);
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
                let tag = buf[end];
                if tag == b'E'
                    && let Ok(f) = super::messages::error_fields(&buf[end + HEADER_LEN..end + len])
                    && matches!(f.severity, "FATAL" | "PANIC")
                {
                    target_fatal = Some(f.code.to_owned());
                }
                let replaced = if gated {
                    match self
                        .filter_frame(
                            tag,
                            end,
                            len,
                            &mut buf,
                            &mut out,
                            &mut wr,
                            &shared,
                            filter.as_mut(),
                        )
                        .await
                    {
                        Ok(r) => r,
                        Err(err) => {
                            let _ =
                                send_fatal(&mut wr, err.sqlstate(), &err.client_message()).await;
                            return Err(err);
                        }
                    }
                } else {
                    None
                };
                match &replaced {
                    Some(frames) => {
                        // The replacement may be several frames, or none.
                        let mut at = 0;
                        while let Ok(Some(n)) = codec::frame_len(&frames[at..], usize::MAX) {
                            tap.observe(frames[at], &frames[at + HEADER_LEN..at + n]);
                            at += n;
                        }
                        out.replace(&buf, end, len, frames);
                    }
                    None => tap.observe(tag, &buf[end + HEADER_LEN..end + len]),
                }
                if tag == b'C'
                    && let Some(counts) = filter.as_mut().and_then(ResultFilter::complete)
                {
                    tap.batch
                        .push_now(Direction::Gateway, EventKind::Masked { counts });
                }
                end += len;
            }
            self.flush_events(&mut tap.batch.events).await;
            if end > 0 {
                out.write_until(&buf, end, &mut wr)
                    .await
                    .map_err(SessionError::ClientIo)?;
                buf.advance(end);
                self.stats.add_to_client(end);
            }
            reserve_for_next(&mut buf);
            tokio::select! {
                biased;
                (rx, signal) = &mut stopped, if !stop_closed => {
                    stop_closed = signal.is_none();
                    let signal = signal.flatten();
                    stopped.set(next_stop(rx));
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
                _ = &mut notified => {
                    notified.set(notify.notified());
                    let notices = std::mem::take(&mut shared.borrow_mut().outbox);
                    if !notices.is_empty() {
                        wr.write_all(&notices).await.map_err(SessionError::ClientIo)?;
                        wr.flush().await.map_err(SessionError::ClientIo)?;
                    }
                }
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) if client_done => return Ok(()),
                    // After its FATAL the target closes, and so do we,
                    // cleanly (TLS close_notify included) and without a
                    // message of our own: the client sees what it would
                    // see directly.
                    Ok(0) | Err(_) if target_fatal.is_some() => {
                        let _ = tokio::time::timeout(FATAL_WRITE_TIMEOUT, wr.shutdown()).await;
                        return Err(SessionError::TargetEnded {
                            connection: self.connection.clone(),
                            code: target_fatal.take().unwrap_or_default(),
                        });
                    }
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

    /// The policy's view of one target frame: refused statements' errors
    /// become the client's 42501, values are masked. Returns the frame to
    /// send instead (possibly empty: nothing), or `None` to relay it as is.
    #[allow(clippy::too_many_arguments)]
    async fn filter_frame(
        &self,
        tag: u8,
        at: usize,
        len: usize,
        buf: &mut BytesMut,
        out: &mut Outgoing,
        wr: &mut WriteHalf<PgStream>,
        shared: &SharedRef,
        filter: Option<&mut ResultFilter>,
    ) -> Result<Option<BytesMut>, SessionError> {
        let body = |buf: &BytesMut| buf[at + HEADER_LEN..at + len].to_vec();
        let unmaskable = |e: super::filter::Unmaskable| SessionError::TargetFailed {
            connection: self.connection.clone(),
            detail: format!("cannot mask the target's answer: {}", e.0),
        };
        match tag {
            b'E' => {
                shared.borrow_mut().unit_error = true;
                if let Ok(f) = super::messages::error_fields(&buf[at + HEADER_LEN..at + len])
                    && f.code == "42601"
                    && let Some((sqlstate, message)) = shared.borrow_mut().take_rewrite(f.message)
                {
                    let mut frame = BytesMut::new();
                    codec::put_error(&mut frame, b'E', "ERROR", sqlstate, &message);
                    return Ok(Some(frame));
                }
                // An error ends a COPY: flush what the masker holds (never
                // a partial row's original bytes).
                if let Some(f) = filter {
                    let _ = f.copy_done();
                    let masked = f.notice(tag, &body(buf)).map_err(unmaskable);
                    // The statement ended: its description ends with it.
                    f.no_data();
                    return masked;
                }
                Ok(None)
            }
            b'Z' => {
                let mut sh = shared.borrow_mut();
                sh.units.pop_front();
                let errored = std::mem::take(&mut sh.unit_error);
                sh.unit_results.push(errored);
                Ok(None)
            }
            b'S' => {
                if let Ok((name, value)) =
                    super::messages::parameter_status(&buf[at + HEADER_LEN..at + len])
                {
                    shared
                        .borrow_mut()
                        .settings
                        .push((name.to_owned(), value.to_owned()));
                }
                // `set_config('application_name', ssn, false)` reports the
                // value back: masked like any text.
                match filter {
                    Some(f) => f.parameter_status(&body(buf)).map_err(unmaskable),
                    None => Ok(None),
                }
            }
            _ => {
                let Some(f) = filter else { return Ok(None) };
                match tag {
                    b'T' => {
                        let injected = shared.borrow_mut().take_describe() == Some(true);
                        // The catalog may be asked: send what is ready first
                        // so the client is not kept waiting for it.
                        out.write_until(buf, at, wr)
                            .await
                            .map_err(SessionError::ClientIo)?;
                        f.describe(&buf[at + HEADER_LEN..at + len])
                            .await
                            .map_err(unmaskable)?;
                        Ok(injected.then(BytesMut::new))
                    }
                    b'n' => {
                        let injected = shared.borrow_mut().take_describe() == Some(true);
                        f.no_data();
                        Ok(injected.then(BytesMut::new))
                    }
                    b'D' => f.row(&buf[at + HEADER_LEN..at + len]).map_err(unmaskable),
                    b'H' => {
                        out.write_until(buf, at, wr)
                            .await
                            .map_err(SessionError::ClientIo)?;
                        f.copy_start(&body(buf)).await.map_err(unmaskable)?;
                        Ok(None)
                    }
                    b'd' => f
                        .copy_data(&buf[at + HEADER_LEN..at + len])
                        .map_err(unmaskable),
                    b'c' => {
                        // What the masker still holds goes before CopyDone.
                        Ok(f.copy_done().map_err(unmaskable)?.map(|mut rest| {
                            rest.extend_from_slice(&buf[at..at + len]);
                            rest
                        }))
                    }
                    b'N' => f.notice(tag, &body(buf)).map_err(unmaskable),
                    // PortalSuspended, EmptyQueryResponse: the next rows come
                    // with a description of their own (injected if need be).
                    b's' | b'I' => {
                        f.no_data();
                        Ok(None)
                    }
                    // `pg_notify('c', ssn)`: payloads are masked like text.
                    b'A' => f.notification(&body(buf)).map_err(unmaskable),
                    _ => Ok(None),
                }
            }
        }
    }
}

/// The next stop signal: `None` once the sender is gone, else the signal
/// (itself `None` if it was cleared). The receiver comes back so the wait
/// can be made again.
async fn next_stop(
    mut stop: watch::Receiver<Option<Stop>>,
) -> (watch::Receiver<Option<Stop>>, Option<Option<Stop>>) {
    let signal = match stop.changed().await {
        Ok(()) => Some(stop.borrow_and_update().clone()),
        Err(_) => None,
    };
    (stop, signal)
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
