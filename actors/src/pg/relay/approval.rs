//! A statement held for an operator's approval: the request goes to the
//! broker, the client is told it waits, and the wait ends with a decision,
//! the deadline, the client leaving or the session stopping — each step
//! recorded.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, ReadHalf};
use tokio::sync::watch;

use super::{Relay, Stop};
use crate::approval::{ApprovalOutcome, PendingApproval, Submit, Withdraw};
use crate::error::SessionError;
use crate::pg::codec;
use crate::pg::gate::{self, Held, SharedRef};
use crate::pg::stream::PgStream;
use crate::pg::tap::ClientTap;
use crate::recorder::now_micros;
use crate::recording::{Direction, EventKind};
use crate::registry::{SessionState, SessionStats};

/// While a statement waits for approval the client may keep sending
/// (pipelining); beyond this many buffered bytes the gateway stops reading
/// until the decision.
const MAX_BUFFERED_WHILE_HELD: usize = 1 << 20;

impl Relay {
    /// Hold a statement until an operator decides, the deadline passes, the
    /// client leaves or the session is stopped. Every step is recorded.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn wait_for_approval(
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
pub(super) enum Waited {
    Approved,
    Refused(&'static str, String),
    ClientGone,
    Stopped,
}
