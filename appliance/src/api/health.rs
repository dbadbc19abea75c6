//! `GET /healthz` and `GET /metrics`.
//!
//! Healthy means: not draining, every listener still accepting, and the
//! recorder answering with its last flush a success. Each failure is one
//! reason in the 503's `reasons`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse_actors::approval::{BrokerHandle, ListPending};
use gatehouse_actors::metrics::{Gauges, render};
use gatehouse_actors::recorder::{RecorderHandle, RecorderStatus, now_micros};
use gatehouse_actors::registry::{List, RegistryHandle};
use hyper::StatusCode;

use super::{Reply, json, reply};

/// How long a scrape waits for an actor's answer before calling it down.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest failure text a 503 repeats.
const MAX_REASON_CHARS: usize = 200;

/// Whether one listener's accept loop is still running. The loop holds a
/// clone and calls [`ListenerFlag::down`] when it ends.
#[derive(Clone, Debug)]
pub struct ListenerFlag(Arc<AtomicBool>);

impl ListenerFlag {
    pub fn down(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    fn is_up(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Health {
    recorder: RecorderHandle,
    registry: RegistryHandle,
    approvals: BrokerHandle,
    listeners: std::sync::Mutex<Vec<(String, ListenerFlag)>>,
    draining: tokio::sync::watch::Receiver<bool>,
}

impl Health {
    pub fn new(
        recorder: RecorderHandle,
        registry: RegistryHandle,
        approvals: BrokerHandle,
        draining: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Health {
            recorder,
            registry,
            approvals,
            listeners: std::sync::Mutex::new(Vec::new()),
            draining,
        }
    }

    /// Register a listener, up; its accept loop calls `down` when it ends.
    pub fn listener(&self, name: &str) -> ListenerFlag {
        let flag = ListenerFlag(Arc::new(AtomicBool::new(true)));
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_owned(), flag.clone()));
        flag
    }

    async fn recorder_status(&self) -> Option<RecorderStatus> {
        tokio::time::timeout(ASK_TIMEOUT, self.recorder.status())
            .await
            .ok()
            .flatten()
    }

    /// Everything unhealthy now, as sentences.
    async fn problems(&self, recorder: Option<&RecorderStatus>) -> Vec<String> {
        let mut problems = Vec::new();
        if *self.draining.borrow() {
            problems.push("shutting down: draining sessions".to_owned());
        }
        for (name, flag) in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if !flag.is_up() {
                problems.push(format!("the {name} listener is not accepting"));
            }
        }
        match recorder {
            None => problems.push("the recorder is not answering".to_owned()),
            Some(status) => {
                if let Some((at, why)) = &status.last_error
                    && status.last_flush.is_none_or(|ok| ok < *at)
                {
                    let why: String = why.chars().take(MAX_REASON_CHARS).collect();
                    problems.push(format!("the recorder's last flush failed: {why}"));
                }
            }
        }
        problems
    }

    pub async fn healthz(&self) -> Reply {
        let recorder = self.recorder_status().await;
        let problems = self.problems(recorder.as_ref()).await;
        if problems.is_empty() {
            json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        } else {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "status": "unhealthy", "reasons": problems }),
            )
        }
    }

    pub async fn metrics(&self) -> Reply {
        let live = match tokio::time::timeout(ASK_TIMEOUT, self.registry.send(List)).await {
            Ok(Ok(sessions)) => {
                let mut by: Vec<(String, u64)> = Vec::new();
                for s in sessions {
                    match by.iter_mut().find(|(p, _)| p == s.protocol) {
                        Some((_, n)) => *n += 1,
                        None => by.push((s.protocol.to_owned(), 1)),
                    }
                }
                by
            }
            _ => Vec::new(),
        };
        let approvals_pending =
            match tokio::time::timeout(ASK_TIMEOUT, self.approvals.send(ListPending)).await {
                Ok(Ok(pending)) => pending.len() as u64,
                _ => 0,
            };
        let text = render(&Gauges {
            live,
            approvals_pending,
            recorder: self.recorder_status().await,
            now: now_micros(),
        });
        reply(StatusCode::OK, "text/plain; version=0.0.4", text)
    }
}
