//! The daemon's side of the operator console: one service per open
//! console, whether it runs on the box (`gatehouse console`, over the
//! control socket) or in-process for an operator on the admin SSH port.
//!
//! The service subscribes to the registry and the approval broker,
//! samples the counters of live sessions once a second, follows the
//! session being watched through the recorder, and pushes all of it to
//! the console as [`Update`]s; it carries out the console's [`Request`]s
//! as the operator it was opened for. Every action is recorded in the
//! operator's own recording before it happens (as admin commands are),
//! and the session it touches records who did it (the kill's reason, the
//! approval's decider). Feeds are bounded: a console that cannot keep up
//! loses updates — counted, shown, and followed by a fresh snapshot —
//! and never slows a session.
//!
//! Layout: this module holds the service; `socket` the control-socket
//! transport (daemon and `gatehouse console`); `ssh` the console on an
//! admin SSH channel.

pub mod socket;
pub mod ssh;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_actors::approval::{BrokerHandle, Decide, SubscribeApprovals};
use gatehouse_actors::feed::{FeedReceiver, feed};
use gatehouse_actors::recorder::RecorderHandle;
use gatehouse_actors::recording::{Event, EventKind, RecordingId};
use gatehouse_actors::registry::{
    KillSession, RegistryHandle, SessionStats, SessionUpdate, StatsSnapshot, Subscribe,
};
use gatehouse_actors::store::RecordingStore;
use gatehouse_actors::store::listing::Window;
use gatehouse_tui::protocol::{PAGE_SIZE, RecordingFilter, Request, Update};
use tokio::sync::mpsc;

use crate::admin::Audit;

/// Session starts, changes and ends queued for one console.
const SESSION_FEED: usize = 1024;
/// Approval requests and departures queued for one console.
const APPROVAL_FEED: usize = 256;
/// Events of the watched session queued for one console: a busy session
/// fills it only when the console stops reading.
const WATCH_FEED: usize = 4096;
/// How often live sessions' counters are sampled.
const STATS_PERIOD: Duration = Duration::from_secs(1);
/// Events shown when a live view opens (older ones are in the replay).
const WATCH_HISTORY: usize = 500;
/// Events a replay loads: a longer session shows its first part (and says
/// so); export has it all.
const MAX_REPLAY_EVENTS: usize = 200_000;
/// Headers read per page request at most, whatever the filter: bounds the
/// work one keypress can cause on a large store.
const MAX_SCAN: usize = 20_000;
/// Page reads a request may chain to find a first match.
const MAX_PAGE_READS: usize = 5;

/// What every console shares.
pub struct ConsoleDeps {
    pub registry: RegistryHandle,
    pub broker: BrokerHandle,
    pub recorder: RecorderHandle,
    pub store_path: PathBuf,
    /// The appliance's seal key, for verifying.
    pub public_key: Vec<u8>,
    pub appliance: String,
}

/// Who a console acts for.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The `[[operators]]` name, when known (SSH login, or `--as`).
    pub name: Option<String>,
    /// How the console reached the daemon: `console over admin ssh from
    /// ADDR`, `local console uid=0 pid=N`.
    pub via: String,
}

impl Operator {
    /// The name the session's recording gives the operator.
    pub fn by(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.via),
            None => self.via.clone(),
        }
    }

    fn shown(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.via.clone())
    }
}

/// The subscriptions of one console, renewed on resync.
struct Feeds {
    sessions: FeedReceiver<SessionUpdate>,
    approvals: FeedReceiver<gatehouse_actors::approval::ApprovalUpdate>,
    /// Drops of feeds already replaced.
    dropped_before: u64,
}

impl Feeds {
    fn dropped(&self, watch: Option<&(RecordingId, FeedReceiver<Event>)>) -> u64 {
        self.dropped_before
            + self.sessions.dropped()
            + self.approvals.dropped()
            + watch.map_or(0, |(_, w)| w.dropped())
    }
}

struct Service {
    deps: Arc<ConsoleDeps>,
    operator: Operator,
    audit: Audit,
    updates: mpsc::Sender<Update>,
    store: Option<Arc<RecordingStore>>,
    /// Live sessions' counters and what was last sent of them.
    live: HashMap<RecordingId, (Arc<SessionStats>, StatsSnapshot)>,
    /// Drops of watch feeds already closed.
    watch_dropped: u64,
}

/// The console went away; the service ends.
struct Gone;

impl Service {
    async fn send(&self, update: Update) -> Result<(), Gone> {
        self.updates.send(update).await.map_err(|_| Gone)
    }

    async fn subscribe(&mut self, dropped_before: u64) -> Result<Feeds, Gone> {
        let (tx, sessions) = feed(SESSION_FEED);
        let (live, recent) = self
            .deps
            .registry
            .send(Subscribe(tx))
            .await
            .unwrap_or_default();
        self.live = live
            .iter()
            .map(|i| (i.id, (i.stats.clone(), i.stats.snapshot())))
            .collect();
        self.send(Update::Sessions {
            live: live.iter().map(|i| i.summary()).collect(),
            recent,
        })
        .await?;
        let (tx, approvals) = feed(APPROVAL_FEED);
        let pending = self
            .deps
            .broker
            .send(SubscribeApprovals(tx))
            .await
            .unwrap_or_default();
        self.send(Update::Approvals { pending }).await?;
        Ok(Feeds {
            sessions,
            approvals,
            dropped_before,
        })
    }

    fn store(&mut self) -> Result<Arc<RecordingStore>, String> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        let store = RecordingStore::open_read_only(&self.deps.store_path)
            .map_err(|e| format!("cannot read the recordings: {e}"))?;
        let store = Arc::new(store);
        self.store = Some(store.clone());
        Ok(store)
    }

    /// Record the action in the operator's recording; it may happen only
    /// if that worked.
    async fn record(&self, what: String) -> Result<(), String> {
        tracing::info!(operator = %self.operator.by(), action = %what.escape_debug(), "console action");
        self.audit
            .durably(EventKind::AdminCommand {
                command: format!("console: {what}"),
            })
            .await
            .map_err(|e| format!("refused: the action could not be recorded ({e})"))
    }

    /// Run a store read off the async threads.
    async fn read<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&RecordingStore) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store()?;
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| format!("store read failed: {e}"))?
    }

    /// Carry out one request; returns the new watch, if it changes.
    async fn handle(
        &mut self,
        request: Request,
        watch: &mut Option<(RecordingId, FeedReceiver<Event>)>,
    ) -> Result<(), Gone> {
        let outcome: Result<Option<Update>, String> = match request {
            Request::Kill { id } => match self.record(format!("kill {id}")).await {
                Err(e) => Err(e),
                Ok(()) => match self
                    .deps
                    .registry
                    .send(KillSession {
                        id,
                        by: self.operator.by(),
                    })
                    .await
                {
                    Ok(Ok(())) => Ok(Some(Update::Done {
                        message: format!("session {id} killed"),
                    })),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(format!("registry unavailable: {e}")),
                },
            },
            Request::Decide {
                id,
                approve,
                reason,
            } => {
                let what = match (&reason, approve) {
                    (_, true) => format!("approve {id}"),
                    (Some(r), false) => format!("deny {id}: {r}"),
                    (None, false) => format!("deny {id}"),
                };
                match self.record(what).await {
                    Err(e) => Err(e),
                    Ok(()) => match self
                        .deps
                        .broker
                        .send(Decide {
                            id: id.clone(),
                            approve,
                            operator: self.operator.name.clone(),
                            via: self.operator.via.clone(),
                            reason,
                        })
                        .await
                    {
                        Ok(Ok(p)) => Ok(Some(Update::Done {
                            message: format!(
                                "{} {id} ({} on {})",
                                if approve { "approved" } else { "denied" },
                                p.identity.escape_debug(),
                                p.connection.escape_debug()
                            ),
                        })),
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(format!("approval broker unavailable: {e}")),
                    },
                }
            }
            Request::Watch { id } => match self.record(format!("watch {id}")).await {
                Err(e) => Err(e),
                Ok(()) => {
                    self.unwatch(watch);
                    let (tx, rx) = feed(WATCH_FEED);
                    let durable = self.deps.recorder.watch(id, tx).await;
                    let read = self
                        .read(move |s| {
                            let header = s.header(id).ok();
                            let events = s.events_tail(id, WATCH_HISTORY).unwrap_or_default();
                            Ok((header, events))
                        })
                        .await;
                    match read {
                        Ok((header, mut history)) => {
                            // Events past what was durable arrive on the feed.
                            if let Some(d) = durable {
                                history.retain(|e| e.seq < d);
                            }
                            *watch = durable.map(|_| (id, rx));
                            Ok(Some(Update::Watching {
                                id,
                                header,
                                history,
                            }))
                        }
                        Err(e) => Err(e),
                    }
                }
            },
            Request::Unwatch => {
                self.unwatch(watch);
                Ok(None)
            }
            Request::Recordings { filter, before } => match RecordingFilter::parse(&filter) {
                Err(e) => Err(e),
                Ok(parsed) => {
                    let window = Window {
                        from: parsed.day,
                        to: parsed.day.map(|d| d + 86_400_000_000),
                    };
                    let page = self
                        .read(move |s| {
                            let mut before = before;
                            let mut headers = Vec::new();
                            let mut next = None;
                            for _ in 0..MAX_PAGE_READS {
                                let page = s
                                    .page(window, before, PAGE_SIZE, MAX_SCAN, |h| {
                                        parsed.matches(h)
                                    })
                                    .map_err(|e| e.to_string())?;
                                headers.extend(page.headers);
                                next = page.next;
                                before = page.next;
                                if !headers.is_empty() || next.is_none() {
                                    break;
                                }
                            }
                            Ok((headers, next))
                        })
                        .await;
                    page.map(|(headers, next)| {
                        Some(Update::Recordings {
                            filter,
                            more: before.is_some(),
                            headers,
                            next,
                        })
                    })
                }
            },
            Request::Replay { id } => match self.record(format!("replay {id}")).await {
                Err(e) => Err(e),
                Ok(()) => {
                    self.read(move |s| {
                        let header = s.header(id).map_err(|e| e.to_string())?;
                        let (events, truncated) = s
                            .events_head(id, MAX_REPLAY_EVENTS)
                            .map_err(|e| e.to_string())?;
                        Ok(Some(Update::Replay {
                            header,
                            events,
                            truncated,
                        }))
                    })
                    .await
                }
            },
            Request::Verify { id } => match self.record(format!("verify {id}")).await {
                Err(e) => Err(e),
                Ok(()) => {
                    let key = self.deps.public_key.clone();
                    self.read(move |s| {
                        let verdict = s.verify(id, &key).map_err(|e| e.to_string())?;
                        Ok(Some(Update::Verdict {
                            id,
                            ok: verdict.is_ok(),
                            verdict: verdict.to_string(),
                        }))
                    })
                    .await
                }
            },
            // Handled by the loop, which owns the feeds.
            Request::Resync => Ok(None),
        };
        match outcome {
            Ok(Some(update)) => self.send(update).await,
            Ok(None) => Ok(()),
            Err(message) => self.send(Update::Failed { message }).await,
        }
    }

    /// Stop following, keeping the count of what the feed dropped.
    fn unwatch(&mut self, watch: &mut Option<(RecordingId, FeedReceiver<Event>)>) {
        if let Some((_, old)) = watch.take() {
            self.watch_dropped += old.dropped();
        }
    }

    async fn session_update(&mut self, u: SessionUpdate) -> Result<(), Gone> {
        match u {
            SessionUpdate::Started(info) => {
                let summary = info.summary();
                self.live.insert(info.id, (info.stats, summary.stats));
                self.send(Update::SessionStarted(summary)).await
            }
            SessionUpdate::Changed {
                id,
                identity,
                connection,
            } => {
                self.send(Update::SessionChanged {
                    id,
                    identity,
                    connection,
                })
                .await
            }
            SessionUpdate::Ended(summary) => {
                self.live.remove(&summary.id);
                self.send(Update::SessionEnded(summary)).await
            }
        }
    }

    /// Counters that changed since the last sample.
    fn sample(&mut self) -> Vec<(RecordingId, StatsSnapshot)> {
        let mut changed = Vec::new();
        for (id, (stats, last)) in &mut self.live {
            let now = stats.snapshot();
            if now != *last {
                *last = now;
                changed.push((*id, now));
            }
        }
        changed
    }
}

/// Serve one console until it goes away (its request channel closes).
pub async fn serve(
    deps: Arc<ConsoleDeps>,
    operator: Operator,
    audit: Audit,
    mut requests: mpsc::Receiver<Request>,
    updates: mpsc::Sender<Update>,
) {
    let mut service = Service {
        operator,
        audit,
        updates,
        store: None,
        live: HashMap::new(),
        watch_dropped: 0,
        deps,
    };
    let _ = run(&mut service, &mut requests).await;
}

async fn run(service: &mut Service, requests: &mut mpsc::Receiver<Request>) -> Result<(), Gone> {
    service
        .send(Update::Hello {
            operator: service.operator.shown(),
            appliance: service.deps.appliance.clone(),
        })
        .await?;
    let mut feeds = service.subscribe(0).await?;
    let mut watch: Option<(RecordingId, FeedReceiver<Event>)> = None;
    let mut tick = tokio::time::interval(STATS_PERIOD);
    let mut dropped_sent = 0;
    loop {
        tokio::select! {
            r = requests.recv() => match r {
                None => return Ok(()),
                Some(Request::Resync) => {
                    let before = feeds.dropped(None);
                    feeds = service.subscribe(before).await?;
                }
                Some(r) => service.handle(r, &mut watch).await?,
            },
            Some(u) = feeds.sessions.rx.recv() => service.session_update(u).await?,
            Some(u) = feeds.approvals.rx.recv() => service.send(Update::Approval(u)).await?,
            e = async {
                match watch.as_mut() {
                    Some((id, w)) => (*id, w.rx.recv().await),
                    None => std::future::pending().await,
                }
            } => match e {
                (id, Some(event)) => service.send(Update::Event { id, event }).await?,
                // The session ended and its recording closed.
                (_, None) => service.unwatch(&mut watch),
            },
            _ = tick.tick() => {
                let stats = service.sample();
                if !stats.is_empty() {
                    service.send(Update::Stats { stats }).await?;
                }
                let dropped = feeds.dropped(watch.as_ref()) + service.watch_dropped;
                if dropped != dropped_sent {
                    dropped_sent = dropped;
                    service.send(Update::Dropped { count: dropped }).await?;
                }
            }
        }
    }
}
