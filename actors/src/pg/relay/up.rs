//! The client pump (client → target): each batch's frames are recorded
//! and checked by the statement gate; blocked statements are answered in
//! the target's place and held ones wait for an operator before going on.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::approval::Waited;
use super::{Outgoing, Relay, Stop, UpEnd, reserve_for_next};
use crate::error::SessionError;
use crate::metrics::Flow;
use crate::pg::codec::{self, HEADER_LEN};
use crate::pg::encoding::SessionEncoding;
use crate::pg::gate::{Gate, SharedRef, Step};
use crate::pg::stream::PgStream;
use crate::pg::tap::ClientTap;
use crate::recording::{Direction, EventKind};

impl Relay {
    /// Client → target. Ends on Terminate, EOF or a stop signal.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn client_to_target(
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
        // One wait for a stop for the whole pump, not a new one per batch:
        // making and dropping it took a lock each time.
        let mut watched = stop.clone();
        let mut stopped = std::pin::pin!(watched.changed());
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
                _ = &mut stopped => return Ok(UpEnd::Stopped),
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
}
