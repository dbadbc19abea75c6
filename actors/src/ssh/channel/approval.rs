//! Commands held for an operator: the request to the approval broker,
//! the agent's input kept (bounded) meanwhile, and the decision.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use russh::ChannelWriteHalf;
use tokio::sync::mpsc;

use super::{ChannelInput, Relay, terminated};
use crate::approval::{ApprovalOutcome, PendingApproval, Submit, Withdraw};
use crate::recorder::now_micros;
use crate::recording::{Direction, EventKind};
use crate::registry::{SessionState, SessionStats};
use crate::ssh::record::Stream;

/// While an exec waits for approval the agent may keep sending (stdin);
/// beyond this many bytes the relay stops taking input until the decision.
const MAX_HELD_BYTES: usize = 1 << 20;
/// What a held input other than data counts towards [`MAX_HELD_BYTES`].
const HELD_ITEM_COST: usize = 64;

/// The session shown as waiting for approval while this lives (several
/// channels may wait at once; the first to finish shows it active again,
/// which understates the wait but never leaves a session "waiting").
struct Waiting<'a>(&'a SessionStats);

impl<'a> Waiting<'a> {
    fn on(stats: &'a SessionStats) -> Self {
        stats.set_state(SessionState::WaitingForApproval);
        Waiting(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set_state(SessionState::Active);
    }
}

/// How a held exec ended.
pub(super) enum Decision {
    Approved,
    Refused(String),
}

impl Relay {
    /// Hold a command for an operator. Input that arrives meanwhile is kept
    /// in `held` (bounded); the agent leaving withdraws the request.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn approval(
        &self,
        line: &str,
        rule: String,
        timeout: Duration,
        approvers: Vec<String>,
        inbox: &mut mpsc::Receiver<ChannelInput>,
        held: &mut VecDeque<ChannelInput>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) -> Decision {
        let decided = |id: &str, decision: &str, by: &str, reason: Option<String>| {
            EventKind::ApprovalDecided {
                id: id.to_owned(),
                decision: decision.to_owned(),
                by: by.to_owned(),
                reason,
            }
        };
        let Some(broker) = self.relays.broker.as_ref() else {
            self.tap_note(
                Direction::Gateway,
                decided("-", "denied", "gateway", Some("no approval broker".into())),
            )
            .await;
            return Decision::Refused(
                "approval required but no operator console is running".into(),
            );
        };
        let requested_at = now_micros();
        let deadline = requested_at + timeout.as_micros() as i64;
        let request = PendingApproval {
            id: String::new(),
            session: self.relays.session,
            identity: self.relays.identity.qualified(),
            groups: self.relays.identity.groups.clone(),
            connection: self.relays.target.name.clone(),
            statement: line.to_owned(),
            rule: rule.clone(),
            approvers,
            requested_at,
            deadline,
        };
        let Ok((id, mut rx)) = broker.send(Submit(request)).await else {
            return Decision::Refused("approval broker unavailable".into());
        };
        // Consoles show the session waiting until this returns.
        let _waiting = Waiting::on(&self.relays.stats);
        self.tap_note(
            Direction::Gateway,
            EventKind::ApprovalRequested {
                id: id.clone(),
                rule,
                deadline,
            },
        )
        .await;
        tracing::info!(approval = %id, command = %line.escape_debug(), "exec held for approval");
        let _ = client
            .extended_data_bytes(
                1,
                Bytes::from(format!(
                    "{}gatehouse: waiting for approval {id}\r\n",
                    // On a terminal the held line's cursor is still on it.
                    if self.watching() { "\r\n" } else { "" }
                )),
            )
            .await;
        let mut held_bytes = 0usize;
        let mut terminate = self.relays.terminate.clone();
        let sleep = tokio::time::sleep(timeout);
        tokio::pin!(sleep);
        let outcome = loop {
            tokio::select! {
                o = &mut rx => break o.ok(),
                _ = &mut sleep => {
                    broker.do_send(Withdraw(id.clone()));
                    self.tap_note(Direction::Gateway, decided(&id, "timed out", "gateway", None)).await;
                    return Decision::Refused(format!("approval timed out ({id})"));
                }
                _ = terminated(&mut terminate) => {
                    broker.do_send(Withdraw(id.clone()));
                    return Decision::Refused("the session was terminated".into());
                }
                input = inbox.recv(), if held_bytes < MAX_HELD_BYTES => match input {
                    Some(ChannelInput::Close) | None => {
                        broker.do_send(Withdraw(id.clone()));
                        self.tap_note(Direction::Gateway, decided(&id, "withdrawn", "client", Some("the agent closed the channel".into()))).await;
                        return Decision::Refused("the channel closed".into());
                    }
                    Some(ChannelInput::Request(_, reply)) => {
                        let _ = reply.send(false);
                    }
                    Some(ChannelInput::Data(d)) => {
                        held_bytes += d.len();
                        if let Some(e) = self.data_event(Stream::Stdin, &d) {
                            self.send_events(vec![e]).await;
                        }
                        held.push_back(ChannelInput::Data(d));
                    }
                    Some(other) => {
                        // Resizes, signals and EOF count too, so a flood of
                        // them cannot grow the queue without bound.
                        held_bytes += HELD_ITEM_COST;
                        held.push_back(other);
                    }
                },
            }
        };
        match outcome {
            Some(ApprovalOutcome::Approved { by }) => {
                self.tap_note(Direction::Gateway, decided(&id, "approved", &by, None))
                    .await;
                Decision::Approved
            }
            Some(ApprovalOutcome::Denied { by, reason }) => {
                self.tap_note(
                    Direction::Gateway,
                    decided(&id, "denied", &by, Some(reason.clone())),
                )
                .await;
                Decision::Refused(format!("approval {id} denied by {by}: {reason}"))
            }
            None => Decision::Refused(format!("approval {id} was withdrawn")),
        }
    }
}
