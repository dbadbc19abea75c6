//! The ApprovalBroker: statements held for an operator's decision.
//!
//! A session whose statement matches an `approve` rule submits a request
//! and waits on the returned receiver (with its own deadline) while every
//! other session goes on. Decisions arrive from any console — the local
//! control socket today, the TUI later — and are delivered once: an
//! approval releases exactly the execution that asked for it. Requests
//! whose session has gone (receiver dropped) disappear from the queue.
//!
//! Consoles subscribe ([`SubscribeApprovals`]): they get the queue, then
//! every request and every departure (decided, withdrawn, timed out)
//! through a bounded [`Feed`], so a new request reaches every open console
//! at once and a stuck console never holds the broker up.

use std::collections::BTreeMap;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::feed::{Feed, publish};
use crate::recording::RecordingId;

/// A statement waiting for a decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingApproval {
    pub id: String,
    pub session: RecordingId,
    pub identity: String,
    pub groups: Vec<String>,
    pub connection: String,
    pub statement: String,
    pub rule: String,
    /// Operators who may decide; empty means any operator marked approver.
    pub approvers: Vec<String>,
    /// Microseconds since the epoch.
    pub requested_at: i64,
    pub deadline: i64,
}

/// An operator's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalOutcome {
    Approved { by: String },
    Denied { by: String, reason: String },
}

/// Queue a request; returns its id, and the answer arrives on the receiver.
#[derive(Message)]
#[rtype(result = "(String, oneshot::Receiver<ApprovalOutcome>)")]
pub struct Submit(pub PendingApproval);

/// The session stopped waiting (timeout, client gone, session ended).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Withdraw(pub String);

/// Requests still waiting, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<PendingApproval>")]
pub struct ListPending;

/// What a console subscription carries after the queue it started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "approval", rename_all = "snake_case")]
pub enum ApprovalUpdate {
    Requested(PendingApproval),
    /// The request left the queue: `how` is `approved by …`, `denied by
    /// …`, or `withdrawn` (timeout, client gone, session ended).
    Gone {
        id: String,
        how: String,
    },
}

/// Subscribe a console; answered with the queue, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<PendingApproval>")]
pub struct SubscribeApprovals(pub Feed<ApprovalUpdate>);

/// Approve or deny a request.
#[derive(Message)]
#[rtype(result = "Result<PendingApproval, String>")]
pub struct Decide {
    pub id: String,
    pub approve: bool,
    /// The operator taking the decision, as named by the console.
    pub operator: Option<String>,
    /// How the decision reached the broker (e.g. `local cli uid=0 pid=7`).
    pub via: String,
    pub reason: Option<String>,
}

struct Waiting {
    request: PendingApproval,
    reply: oneshot::Sender<ApprovalOutcome>,
}

pub struct ApprovalBroker {
    /// Operators marked `approver` in the config.
    approvers: Vec<String>,
    waiting: BTreeMap<String, Waiting>,
    consoles: Vec<Feed<ApprovalUpdate>>,
}

pub type BrokerHandle = Addr<ApprovalBroker>;

impl ApprovalBroker {
    pub fn new(approvers: Vec<String>) -> Self {
        ApprovalBroker {
            approvers,
            waiting: BTreeMap::new(),
            consoles: Vec::new(),
        }
    }

    fn tell_consoles(&mut self, update: ApprovalUpdate) {
        if !self.consoles.is_empty() {
            publish(&mut self.consoles, &update);
        }
    }

    /// Forget requests whose session stopped waiting without a Withdraw.
    fn drop_abandoned(&mut self) {
        let gone: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.reply.is_closed())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.waiting.remove(&id);
            self.tell_consoles(ApprovalUpdate::Gone {
                id,
                how: "withdrawn".into(),
            });
        }
    }

    fn new_id(&self) -> String {
        loop {
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
            if !self.waiting.contains_key(&id) {
                return id;
            }
        }
    }

    /// Who may decide `request`, as `Ok(by)` for the record.
    fn check_operator(&self, request: &PendingApproval, d: &Decide) -> Result<String, String> {
        match &d.operator {
            Some(name) => {
                if !self.approvers.contains(name) {
                    return Err(format!("{name:?} is not an operator marked approver"));
                }
                if !request.approvers.is_empty() && !request.approvers.contains(name) {
                    return Err(format!(
                        "rule {:?} is decided by {} only",
                        request.rule,
                        request.approvers.join(", ")
                    ));
                }
                Ok(format!("{name} ({})", d.via))
            }
            None if self.approvers.is_empty() && request.approvers.is_empty() => Ok(d.via.clone()),
            None => Err("name the deciding operator (an operator marked approver)".into()),
        }
    }
}

impl Actor for ApprovalBroker {
    type Context = Context<Self>;
}

impl Handler<Submit> for ApprovalBroker {
    type Result = MessageResult<Submit>;
    fn handle(&mut self, Submit(mut request): Submit, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if request.id.is_empty() || self.waiting.contains_key(&request.id) {
            request.id = self.new_id();
        }
        tracing::info!(
            approval = %request.id,
            session = %request.session,
            rule = %request.rule,
            "approval requested"
        );
        let id = request.id.clone();
        self.tell_consoles(ApprovalUpdate::Requested(request.clone()));
        self.waiting
            .insert(id.clone(), Waiting { request, reply: tx });
        MessageResult((id, rx))
    }
}

impl Handler<Withdraw> for ApprovalBroker {
    type Result = ();
    fn handle(&mut self, Withdraw(id): Withdraw, _: &mut Context<Self>) {
        if self.waiting.remove(&id).is_some() {
            self.tell_consoles(ApprovalUpdate::Gone {
                id,
                how: "withdrawn".into(),
            });
        }
    }
}

impl Handler<ListPending> for ApprovalBroker {
    type Result = MessageResult<ListPending>;
    fn handle(&mut self, _: ListPending, _: &mut Context<Self>) -> Self::Result {
        self.drop_abandoned();
        let mut list: Vec<_> = self.waiting.values().map(|w| w.request.clone()).collect();
        list.sort_by_key(|r| r.requested_at);
        MessageResult(list)
    }
}

impl Handler<Decide> for ApprovalBroker {
    type Result = Result<PendingApproval, String>;
    fn handle(&mut self, d: Decide, _: &mut Context<Self>) -> Self::Result {
        let Some(waiting) = self.waiting.get(&d.id) else {
            return Err(format!("no pending approval {:?}", d.id));
        };
        let by = self.check_operator(&waiting.request, &d)?;
        let Some(waiting) = self.waiting.remove(&d.id) else {
            return Err(format!("no pending approval {:?}", d.id));
        };
        let outcome = if d.approve {
            ApprovalOutcome::Approved { by }
        } else {
            ApprovalOutcome::Denied {
                by,
                reason: d.reason.unwrap_or_else(|| "denied by operator".into()),
            }
        };
        tracing::info!(approval = %d.id, ?outcome, "approval decided");
        let how = match &outcome {
            ApprovalOutcome::Approved { by } => format!("approved by {by}"),
            ApprovalOutcome::Denied { by, .. } => format!("denied by {by}"),
        };
        self.tell_consoles(ApprovalUpdate::Gone {
            id: d.id.clone(),
            how,
        });
        waiting
            .reply
            .send(outcome)
            .map_err(|_| format!("the session waiting on {} has ended", d.id))?;
        Ok(waiting.request)
    }
}

impl Handler<SubscribeApprovals> for ApprovalBroker {
    type Result = MessageResult<SubscribeApprovals>;
    fn handle(&mut self, msg: SubscribeApprovals, _: &mut Context<Self>) -> Self::Result {
        self.drop_abandoned();
        self.consoles.retain(|f| !f.is_closed());
        self.consoles.push(msg.0);
        let mut list: Vec<_> = self.waiting.values().map(|w| w.request.clone()).collect();
        list.sort_by_key(|r| r.requested_at);
        MessageResult(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(approvers: &[&str]) -> PendingApproval {
        PendingApproval {
            id: String::new(),
            session: RecordingId::new(),
            identity: "bot".into(),
            groups: vec![],
            connection: "db".into(),
            statement: "DELETE FROM t".into(),
            rule: "r".into(),
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            requested_at: 1,
            deadline: 2,
        }
    }

    fn decide(id: &str, operator: Option<&str>, approve: bool) -> Decide {
        Decide {
            id: id.into(),
            approve,
            operator: operator.map(str::to_owned),
            via: "test".into(),
            reason: Some("no".into()),
        }
    }

    #[actix::test]
    async fn approvals_are_single_use_and_checked() {
        let broker = ApprovalBroker::new(vec!["alice".into(), "bob".into()]).start();
        let (_, rx) = broker.send(Submit(request(&["alice"]))).await.unwrap();
        let list = broker.send(ListPending).await.unwrap();
        assert_eq!(list.len(), 1);
        let id = list[0].id.clone();
        assert!(broker.send(decide(&id, None, true)).await.unwrap().is_err());
        let err = broker
            .send(decide(&id, Some("bob"), true))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.contains("alice"), "{err}");
        assert!(
            broker
                .send(decide(&id, Some("mallory"), true))
                .await
                .unwrap()
                .is_err()
        );
        broker
            .send(decide(&id, Some("alice"), true))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            rx.await.unwrap(),
            ApprovalOutcome::Approved {
                by: "alice (test)".into()
            }
        );
        assert!(
            broker
                .send(decide(&id, Some("alice"), true))
                .await
                .unwrap()
                .is_err(),
            "used once"
        );
    }

    #[actix::test]
    async fn gone_sessions_leave_the_queue() {
        let broker = ApprovalBroker::new(vec![]).start();
        let (_, rx) = broker.send(Submit(request(&[]))).await.unwrap();
        drop(rx);
        assert!(broker.send(ListPending).await.unwrap().is_empty());
        let (_, rx) = broker.send(Submit(request(&[]))).await.unwrap();
        let id = broker.send(ListPending).await.unwrap()[0].id.clone();
        broker
            .send(decide(&id, None, false))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            rx.await.unwrap(),
            ApprovalOutcome::Denied {
                by: "test".into(),
                reason: "no".into()
            }
        );
    }

    #[actix::test]
    async fn consoles_hear_of_requests_and_of_their_end() {
        let broker = ApprovalBroker::new(vec!["alice".into()]).start();
        let (_, _waiting) = broker.send(Submit(request(&[]))).await.unwrap();
        let (tx, mut rx) = crate::feed::feed(8);
        let queue = broker.send(SubscribeApprovals(tx)).await.unwrap();
        assert_eq!(queue.len(), 1, "the queue comes with the subscription");
        let (second, _rx2) = broker.send(Submit(request(&[]))).await.unwrap();
        let (third, rx3) = broker.send(Submit(request(&[]))).await.unwrap();
        broker
            .send(decide(&second, Some("alice"), false))
            .await
            .unwrap()
            .unwrap();
        drop(rx3);
        broker.send(ListPending).await.unwrap();
        assert!(matches!(rx.rx.recv().await, Some(ApprovalUpdate::Requested(r)) if r.id == second));
        assert!(matches!(rx.rx.recv().await, Some(ApprovalUpdate::Requested(r)) if r.id == third));
        assert_eq!(
            rx.rx.recv().await,
            Some(ApprovalUpdate::Gone {
                id: second,
                how: "denied by alice (test)".into()
            })
        );
        assert_eq!(
            rx.rx.recv().await,
            Some(ApprovalUpdate::Gone {
                id: third,
                how: "withdrawn".into()
            })
        );
    }
}
