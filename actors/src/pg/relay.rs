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
use super::encoding::{ClientEncoding, SessionEncoding};
use super::filter::ResultFilter;
use super::gate::{self, Gate, Held, SharedRef, Step};
use super::stream::PgStream;
use super::tap::{ClientTap, TargetTap};
use crate::approval::{ApprovalOutcome, BrokerHandle, PendingApproval, Submit, Withdraw};
use crate::error::SessionError;
use crate::metrics::{self, Flow};
use crate::recorder::{RecorderHandle, RecorderMsg, now_micros};
use crate::recording::{Direction, EventKind, RecordingId};
use crate::registry::{SessionState, SessionStats};

/// While a statement waits for approval the client may keep sending
/// (pipelining); beyond this many buffered bytes the gateway stops reading
/// until the decision.
const MAX_BUFFERED_WHILE_HELD: usize = 1 << 20;

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
    /// The statement gate and result masking; `None` when the policy
    /// neither restricts nor masks (every frame passes untouched).
    pub policy: Option<PolicyCtx>,
    /// The target's settings at startup (ParameterStatus), for the gate.
    pub initial_settings: Vec<(String, String)>,
    /// Bytes, statements and state, as consoles see them.
    pub stats: std::sync::Arc<SessionStats>,
}

/// What the policy phases need beyond the frames.
pub struct PolicyCtx {
    pub policy: std::sync::Arc<crate::policy::SqlPolicy>,
    pub broker: Option<BrokerHandle>,
    pub identity: String,
    pub groups: Vec<String>,
    pub target: crate::gateway::PgTarget,
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
        let shared: SharedRef = Default::default();
        shared.borrow_mut().settings = self.initial_settings.clone();
        let encoding: SessionEncoding = std::rc::Rc::new(std::cell::Cell::new(
            self.initial_settings
                .iter()
                .rev()
                .find(|(k, _)| k == "client_encoding")
                .map_or(ClientEncoding::UTF8, |(_, v)| {
                    ClientEncoding::from_pg_name(v)
                }),
        ));
        let notify = std::rc::Rc::new(tokio::sync::Notify::new());
        let mut stop_rx = stop_tx.subscribe();
        // A kill that arrived while the session was still connecting is
        // already the current value; make the pumps see it.
        if stop_rx.borrow().is_some() {
            stop_rx.mark_changed();
        }
        let up = self.client_to_target(
            client_rd,
            client_buf,
            target_wr,
            stop_rx.clone(),
            shared.clone(),
            notify.clone(),
            encoding.clone(),
        );
        let down = self.target_to_client(
            target_rd, target_buf, client_wr, stop_rx, shared, notify, encoding,
        );
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

    /// Send the batch's events: durably first under strict recording.
    async fn commit_events(&self, tap: &mut ClientTap) -> Result<(), SessionError> {
        if self.strict && !tap.batch.events.is_empty() {
            let events = std::mem::take(&mut tap.batch.events);
            self.recorder
                .record_durably(self.id, events)
                .await
                .map_err(SessionError::RecordingFailed)
        } else {
            self.flush_events(&mut tap.batch.events).await;
            Ok(())
        }
    }

    /// Client → target. Ends on Terminate, EOF or a stop signal.
    #[allow(clippy::too_many_arguments)]
    async fn client_to_target(
        &self,
        mut rd: ReadHalf<PgStream>,
        mut buf: BytesMut,
        mut wr: WriteHalf<PgStream>,
        mut stop: watch::Receiver<Option<Stop>>,
        shared: SharedRef,
        notify: std::rc::Rc<tokio::sync::Notify>,
        encoding: SessionEncoding,
    ) -> Result<UpEnd, SessionError> {
        let mut tap = ClientTap::new(
            encoding.clone(),
            self.policy.as_ref().and_then(|p| p.policy.masker),
        );
        let mut gate = self
            .policy
            .as_ref()
            .map(|p| Gate::new(p.policy.clone(), shared.clone(), encoding));
        let lost = |e: std::io::Error| SessionError::TargetLost {
            connection: self.connection.clone(),
            detail: e.to_string(),
        };
        loop {
            let mut end = 0;
            let mut terminate = false;
            // Bytes to send instead of buf[written..]: built only when a
            // frame is replaced; otherwise the batch goes out as read.
            let mut out = Outgoing::new(Flow::ToTarget);
            tap.batch.stamp();
            while let Some(len) = codec::frame_len_limited(&buf[end..], &self.client_frames)? {
                let tag = buf[end];
                tap.observe(tag, &buf[end + HEADER_LEN..end + len])?;
                let step = match gate.as_mut() {
                    Some(g) => g.check(tag, &buf[end + HEADER_LEN..end + len])?,
                    None => Step::Forward,
                };
                let describe = |g: Option<&mut Gate>, buf: &BytesMut| {
                    g.filter(|_| tag == b'E')
                        .and_then(|g| g.describe_before(&buf[end..end + len]))
                };
                match step {
                    Step::Forward => {
                        if let Some(bytes) = describe(gate.as_mut(), &buf) {
                            out.replace(&buf, end, len, &bytes);
                        }
                    }
                    Step::Replace(bytes, refusal) => {
                        tracing::info!(rule = %refusal.rule, "statement blocked");
                        tap.batch.push_now(
                            Direction::Gateway,
                            EventKind::Blocked {
                                rule: refusal.rule,
                                reason: refusal.message,
                            },
                        );
                        out.replace(&buf, end, len, &bytes);
                    }
                    Step::Hold(held) => {
                        // Everything before the held message goes now, so
                        // its results are not delayed by the wait.
                        self.commit_events(&mut tap).await?;
                        out.write_until(&buf, end, &mut wr).await.map_err(lost)?;
                        let decision = self
                            .wait_for_approval(
                                &held, &mut tap, &mut rd, &mut buf, &mut stop, &shared, &notify,
                            )
                            .await?;
                        match decision {
                            Waited::Approved => {
                                if let (Some(g), Some(name)) = (gate.as_mut(), &held.parse_of) {
                                    g.grant(name);
                                }
                                if let (Some(g), Some(portal)) = (gate.as_mut(), &held.portal) {
                                    g.approve_portal(portal);
                                }
                                if let Some(bytes) = describe(gate.as_mut(), &buf) {
                                    out.replace(&buf, end, len, &bytes);
                                }
                            }
                            Waited::Refused(sqlstate, message) => {
                                if let Some(g) = gate.as_mut() {
                                    if let Some(name) = &held.parse_of {
                                        g.refused_parse(name);
                                    }
                                    let bytes = g.substitute(
                                        held.tag,
                                        held.parse_of.as_deref(),
                                        sqlstate,
                                        message,
                                    );
                                    out.replace(&buf, end, len, &bytes);
                                }
                            }
                            Waited::ClientGone => {
                                let _ = wr.write_all(b"X\0\0\0\x04").await;
                                let _ = wr.flush().await;
                                return Ok(UpEnd::Done);
                            }
                            Waited::Stopped => return Ok(UpEnd::Stopped),
                        }
                    }
                }
                end += len;
                if tag == b'X' {
                    terminate = true;
                    break;
                }
            }
            self.commit_events(&mut tap).await?;
            if end > 0 {
                out.write_until(&buf, end, &mut wr).await.map_err(lost)?;
                buf.advance(end);
                self.stats.add_from_client(end);
                self.stats
                    .add_statements(std::mem::take(&mut tap.statements));
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

    /// Hold a statement until an operator decides, the deadline passes, the
    /// client leaves or the session is stopped. Every step is recorded.
    #[allow(clippy::too_many_arguments)]
    async fn wait_for_approval(
        &self,
        held: &Held,
        tap: &mut ClientTap,
        rd: &mut ReadHalf<PgStream>,
        buf: &mut BytesMut,
        stop: &mut watch::Receiver<Option<Stop>>,
        shared: &SharedRef,
        notify: &tokio::sync::Notify,
    ) -> Result<Waited, SessionError> {
        let Some(ctx) = self.policy.as_ref() else {
            return Ok(Waited::Approved);
        };
        let requested_at = now_micros();
        let deadline = requested_at + held.timeout.as_micros() as i64;
        let request = PendingApproval {
            id: String::new(),
            session: self.id,
            identity: ctx.identity.clone(),
            groups: ctx.groups.clone(),
            connection: self.connection.clone(),
            statement: held.sql.clone(),
            rule: held.rule.clone(),
            approvers: held.approvers.clone(),
            requested_at,
            deadline,
        };
        let decided =
            |tap: &mut ClientTap, id: &str, decision: &str, by: &str, reason: Option<String>| {
                tap.batch.push_now(
                    Direction::Gateway,
                    EventKind::ApprovalDecided {
                        id: id.to_owned(),
                        decision: decision.to_owned(),
                        by: by.to_owned(),
                        reason,
                    },
                );
            };
        let Some(broker) = ctx.broker.as_ref() else {
            decided(
                tap,
                "-",
                "denied",
                "gateway",
                Some("no approval broker".into()),
            );
            self.commit_events(tap).await?;
            return Ok(Waited::Refused(
                gate::BLOCKED,
                "approval required but no operator console is running".into(),
            ));
        };
        let Ok((id, mut rx)) = broker.send(Submit(request)).await else {
            return Ok(Waited::Refused(
                gate::BLOCKED,
                "approval broker unavailable".into(),
            ));
        };
        tap.batch.push_now(
            Direction::Gateway,
            EventKind::ApprovalRequested {
                id: id.clone(),
                rule: held.rule.clone(),
                deadline,
            },
        );
        self.commit_events(tap).await?;
        {
            let mut sh = shared.borrow_mut();
            codec::put_fields(
                &mut sh.outbox,
                b'N',
                &[
                    (b'S', "NOTICE"),
                    (b'V', "NOTICE"),
                    (b'C', "00000"),
                    (b'M', &format!("waiting for approval {id}")),
                    (
                        b'D',
                        &format!(
                            "rule \"{}\" requires an operator's approval; it expires in {} s",
                            held.rule,
                            held.timeout.as_secs()
                        ),
                    ),
                ],
            );
        }
        notify.notify_one();
        self.stats.set_state(SessionState::WaitingForApproval);
        // Whatever ends the wait, the session is active again (or ending).
        let _active = Reactivate(&self.stats);
        tracing::info!(approval = %id, rule = %held.rule, "waiting for approval");
        let sleep = tokio::time::sleep(held.timeout);
        tokio::pin!(sleep);
        let outcome = loop {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    broker.do_send(Withdraw(id.clone()));
                    decided(tap, &id, "withdrawn", "gateway", Some("session ended".into()));
                    self.flush_events(&mut tap.batch.events).await;
                    return Ok(Waited::Stopped);
                }
                r = &mut rx => break r.ok(),
                _ = &mut sleep => break None,
                n = rd.read_buf(buf), if buf.len() < MAX_BUFFERED_WHILE_HELD => match n {
                    Ok(0) | Err(_) => {
                        broker.do_send(Withdraw(id.clone()));
                        decided(tap, &id, "withdrawn", "gateway", Some("client disconnected".into()));
                        self.flush_events(&mut tap.batch.events).await;
                        return Ok(Waited::ClientGone);
                    }
                    Ok(_) => {}
                },
            }
        };
        let waited = match outcome {
            Some(ApprovalOutcome::Approved { by }) => {
                decided(tap, &id, "approved", &by, None);
                Waited::Approved
            }
            Some(ApprovalOutcome::Denied { by, reason }) => {
                decided(tap, &id, "denied", &by, Some(reason.clone()));
                Waited::Refused(
                    gate::BLOCKED,
                    format!("approval {id} denied by {by}: {reason}"),
                )
            }
            None => {
                // Dropped first: a decision racing the timeout then fails
                // ("the session ... has ended") instead of reporting success.
                drop(rx);
                broker.do_send(Withdraw(id.clone()));
                decided(tap, &id, "timed_out", "gateway", None);
                Waited::Refused(
                    gate::APPROVAL_TIMED_OUT,
                    format!("approval timed out ({id})"),
                )
            }
        };
        self.commit_events(tap).await?;
        Ok(waited)
    }

    /// Target → client. Ends when the target closes or a stop arrives; on a
    /// stop with a message it sends the client a final ErrorResponse.
    #[allow(clippy::too_many_arguments)]
    async fn target_to_client(
        &self,
        mut rd: ReadHalf<PgStream>,
        mut buf: BytesMut,
        mut wr: WriteHalf<PgStream>,
        mut stop: watch::Receiver<Option<Stop>>,
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
                _ = notify.notified() => {
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
                        f.describe(&body(buf)).await.map_err(unmaskable)?;
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

/// Marks the session active again when a wait for approval ends, however
/// it ends.
struct Reactivate<'a>(&'a SessionStats);

impl Drop for Reactivate<'_> {
    fn drop(&mut self) {
        self.0.set_state(SessionState::Active);
    }
}

/// How a wait for approval ended.
enum Waited {
    Approved,
    Refused(&'static str, String),
    ClientGone,
    Stopped,
}

/// A batch as it goes out: the bytes as read, with any replaced frames
/// swapped in. Zero-copy unless something was replaced.
struct Outgoing {
    /// buf[..written] is already out (or copied into `assembled`).
    written: usize,
    assembled: BytesMut,
    /// Which way, for the relayed-bytes counter.
    flow: Flow,
}

impl Outgoing {
    fn new(flow: Flow) -> Self {
        Outgoing {
            written: 0,
            assembled: BytesMut::new(),
            flow,
        }
    }

    /// Frame buf[at..at+len] is replaced by `with`.
    fn replace(&mut self, buf: &[u8], at: usize, len: usize, with: &[u8]) {
        self.assembled.extend_from_slice(&buf[self.written..at]);
        self.assembled.extend_from_slice(with);
        self.written = at + len;
    }

    /// Write everything up to buf[..upto].
    async fn write_until(
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
