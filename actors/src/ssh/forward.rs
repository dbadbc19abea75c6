//! Port forwards, when the policy allows them: one forwarded connection's
//! relay, counted, in either direction.
//!
//! - `direct-tcpip` (`ssh -L`): the agent opens a channel, the gateway
//!   opens one from the target to the host and port the agent named.
//! - `tcpip-forward` (`ssh -R`): the agent asks the target (through the
//!   gateway) to listen on a port; each connection the target accepts
//!   there arrives as a `forwarded-tcpip` open, which [`remote`] answers by
//!   opening the agent's side — only for ports the agent asked for.
//!
//! The recording holds the endpoints, the opening (durable first under
//! strict recording) and the byte counts at close; the bytes themselves
//! are the forwarded protocol's and are not recorded.

use std::sync::Arc;

use russh::{ChannelId, ChannelMsg, ChannelWriteHalf};
use tokio::sync::mpsc;

use super::channel::{ChannelInput, REQUEST_TIMEOUT, Relays, terminated};
use super::upstream::Incoming;
use crate::recorder::{PendingEvent, RecorderMsg, now_micros};
use crate::recording::{Direction, EventKind};

/// How long the target has to answer the gateway's close of a forward.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Connections to remote forwards relayed at once per session; more are
/// refused until one closes.
pub const MAX_REMOTE_CONNECTIONS: usize = 32;

/// Bytes from the agent's side of a remote forward waiting for the target.
const REMOTE_QUEUE: usize = 64;

/// Refused `forwarded-tcpip` opens recorded per session; a target that
/// keeps opening gets one more record saying so, then only a count at the
/// end, so it cannot fill the recording.
const REFUSALS_RECORDED: u32 = 16;

/// The two ends of a forward, as the recording names them.
pub struct Endpoints {
    /// `direct-tcpip` or `tcpip-forward`.
    pub forward: &'static str,
    /// Where the agent's client accepted the connection (`ADDR:PORT`).
    pub from: String,
    /// The host and port the target connects to.
    pub to: String,
}

fn event(
    id: Option<ChannelId>,
    ends: &Endpoints,
    counts: (u64, u64),
    outcome: &str,
) -> PendingEvent {
    PendingEvent {
        at: now_micros(),
        dir: Direction::Gateway,
        kind: EventKind::PortForward {
            channel: id.map(u32::from),
            forward: ends.forward.into(),
            from: ends.from.clone(),
            to: ends.to.clone(),
            bytes_in: counts.0,
            bytes_out: counts.1,
            outcome: outcome.into(),
        },
    }
}

/// Record that a forward opens; `Err` when strict recording could not
/// make that durable (the forward is then refused).
pub async fn opening(
    relays: &Relays,
    id: Option<ChannelId>,
    ends: &Endpoints,
) -> Result<(), String> {
    let e = event(id, ends, (0, 0), "opened");
    if relays.target.policy.strict_recording {
        relays
            .recorder
            .record_durably(relays.session, vec![e])
            .await
    } else {
        relays
            .recorder
            .send(RecorderMsg::Events(relays.session, vec![e]))
            .await;
        Ok(())
    }
}

/// Record a forward event with no bytes: one that did not open, a remote
/// listen that started or was cancelled.
pub async fn record(relays: &Relays, id: Option<ChannelId>, ends: &Endpoints, why: &str) {
    let e = event(id, ends, (0, 0), why);
    relays
        .recorder
        .send(RecorderMsg::Events(relays.session, vec![e]))
        .await;
}

/// Relay one forward until either side closes it or the session ends.
pub fn spawn(
    relays: Arc<Relays>,
    id: ChannelId,
    client_wr: ChannelWriteHalf<russh::server::Msg>,
    upstream: russh::Channel<russh::client::Msg>,
    mut inbox: mpsc::Receiver<ChannelInput>,
    ends: Endpoints,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut up_rd, up_wr) = upstream.split();
        let mut stop_up = relays.terminate.clone();
        let mut stop_down = relays.terminate.clone();
        // Each pump tells the other when it is done: a target that closed
        // leaves nothing for the agent's side to carry, and a target that
        // never answers the gateway's close gets CLOSE_GRACE.
        let down_done = tokio::sync::Notify::new();
        let up_done = tokio::sync::Notify::new();
        let up = async {
            let mut bytes = 0u64;
            loop {
                let input = tokio::select! {
                    i = inbox.recv() => i,
                    _ = terminated(&mut stop_up) => break,
                    _ = down_done.notified() => break,
                };
                let ok = match input {
                    Some(ChannelInput::Data(d)) => {
                        bytes += d.len() as u64;
                        relays.stats.add_from_client(d.len());
                        // A target that never opens its window must not
                        // hold this forward past the session's end.
                        tokio::select! {
                            r = up_wr.data_bytes(d) => r.is_ok(),
                            _ = terminated(&mut stop_up) => false,
                            _ = down_done.notified() => false,
                        }
                    }
                    Some(ChannelInput::Eof) => up_wr.eof().await.is_ok(),
                    Some(ChannelInput::Request(_, reply)) => {
                        // A forward takes no requests.
                        let _ = reply.send(false);
                        true
                    }
                    Some(ChannelInput::Close) | None => false,
                    Some(_) => true,
                };
                if !ok {
                    break;
                }
            }
            let _ = up_wr.close().await;
            up_done.notify_one();
            bytes
        };
        let down = async {
            let mut bytes = 0u64;
            let grace = tokio::time::sleep(std::time::Duration::MAX);
            tokio::pin!(grace);
            let mut closing = false;
            loop {
                let msg = tokio::select! {
                    m = up_rd.wait() => m,
                    _ = terminated(&mut stop_down) => break,
                    _ = up_done.notified(), if !closing => {
                        closing = true;
                        grace.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                        continue;
                    }
                    _ = &mut grace => break,
                };
                let ok = match msg {
                    Some(ChannelMsg::Data { data }) => {
                        bytes += data.len() as u64;
                        relays.stats.add_to_client(data.len());
                        // A client that stopped reading never opens its
                        // window: the session's end is the way out.
                        tokio::select! {
                            r = client_wr.data_bytes(data) => r.is_ok(),
                            _ = terminated(&mut stop_down) => false,
                        }
                    }
                    Some(ChannelMsg::Eof) => client_wr.eof().await.is_ok(),
                    Some(ChannelMsg::Close) | None => false,
                    Some(_) => true,
                };
                if !ok {
                    break;
                }
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                let _ = client_wr.eof().await;
                let _ = client_wr.close().await;
            })
            .await;
            down_done.notify_one();
            bytes
        };
        let (bytes_in, bytes_out) = tokio::join!(up, down);
        let e = event(Some(id), &ends, (bytes_in, bytes_out), "closed");
        relays
            .recorder
            .send(RecorderMsg::Events(relays.session, vec![e]))
            .await;
    })
}

/// Answer the target's `forwarded-tcpip` opens for the session's life:
/// each one for a port the agent asked the target to listen on (and the
/// policy allows forwarding) gets the agent's side opened and relayed;
/// any other is refused.
pub fn remote(
    relays: Arc<Relays>,
    mut incoming: mpsc::Receiver<Incoming>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_REMOTE_CONNECTIONS));
        let mut stop = relays.terminate.clone();
        let mut refused = 0u32;
        loop {
            let inc = tokio::select! {
                i = incoming.recv() => match i {
                    Some(i) => i,
                    None => break,
                },
                _ = terminated(&mut stop) => break,
            };
            let ends = Endpoints {
                forward: "tcpip-forward",
                from: inc.originator.clone(),
                to: format!("agent via {}", inc.listening),
            };
            let port = inc
                .listening
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u32>().ok());
            let asked = relays.target.policy.port_forwarding
                && port.is_some_and(|p| relays.remote_ports.lock().is_ok_and(|s| s.contains(&p)));
            let slot = if asked {
                slots.clone().try_acquire_owned().ok()
            } else {
                None
            };
            let Some(slot) = slot else {
                let why = if asked {
                    format!("refused: {MAX_REMOTE_CONNECTIONS} connections already open")
                } else {
                    "refused: not asked for".to_owned()
                };
                refused += 1;
                if refused <= REFUSALS_RECORDED {
                    tracing::warn!(listening = %inc.listening.escape_debug(), "a forwarded-tcpip open from the target: {why}");
                    let why = if refused == REFUSALS_RECORDED {
                        format!("{why} (later refusals are counted, not recorded)")
                    } else {
                        why
                    };
                    record(&relays, None, &ends, &why).await;
                }
                continue;
            };
            if let Err(e) = opening(&relays, None, &ends).await {
                tracing::error!("remote forward refused: it could not be recorded ({e})");
                continue;
            }
            let relays = relays.clone();
            tokio::spawn(async move {
                let _slot = slot;
                serve(relays, inc, ends).await;
            });
        }
        if refused > REFUSALS_RECORDED {
            let ends = Endpoints {
                forward: "tcpip-forward",
                from: "target".into(),
                to: "agent".into(),
            };
            let n = refused - REFUSALS_RECORDED;
            let why = format!("refused: {n} more opens, not recorded one by one");
            record(&relays, None, &ends, &why).await;
        }
    })
}

/// Open the agent's side of one connection to a remote forward, then relay.
async fn serve(relays: Arc<Relays>, inc: Incoming, ends: Endpoints) {
    let (host, port) = split(&inc.listening);
    let (orig, orig_port) = split(&inc.originator);
    let opened = tokio::time::timeout(
        REQUEST_TIMEOUT,
        relays
            .server
            .channel_open_forwarded_tcpip(host, port, orig, orig_port),
    )
    .await;
    let agent = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            record(
                &relays,
                None,
                &ends,
                &format!("failed: the agent refused it ({e})"),
            )
            .await;
            inc.reply
                .reject(russh::ChannelOpenFailure::ConnectFailed)
                .await;
            return;
        }
        Err(_) => {
            record(&relays, None, &ends, "failed: the agent did not answer").await;
            inc.reply
                .reject(russh::ChannelOpenFailure::ConnectFailed)
                .await;
            return;
        }
    };
    inc.reply.accept().await;
    let id = agent.id();
    let (mut agent_rd, agent_wr) = agent.split();
    // The agent's bytes on a channel the gateway opened arrive on the
    // channel itself (the session's handler knows nothing of it).
    let (tx, rx) = mpsc::channel(REMOTE_QUEUE);
    let reader = tokio::spawn(async move {
        while let Some(msg) = agent_rd.wait().await {
            let input = match msg {
                ChannelMsg::Data { data } => ChannelInput::Data(data),
                ChannelMsg::Eof => ChannelInput::Eof,
                ChannelMsg::Close => ChannelInput::Close,
                _ => continue,
            };
            let last = matches!(input, ChannelInput::Close);
            if tx.send(input).await.is_err() || last {
                break;
            }
        }
    });
    let _ = spawn(relays, id, agent_wr, inc.channel, rx, ends).await;
    reader.abort();
}

/// `ADDR:PORT` as the two fields SSH carries.
pub(super) fn split(end: &str) -> (String, u32) {
    match end.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(0)),
        None => (end.to_owned(), 0),
    }
}
