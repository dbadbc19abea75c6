//! One `direct-tcpip` channel's relay, when the policy allows port
//! forwarding: the agent's bytes to a channel the gateway opens from the
//! target to the host and port the agent named, and back, counted. The
//! recording holds the endpoints, the opening (durable first under strict
//! recording) and the byte counts at close; the bytes themselves are the
//! forwarded protocol's and are not recorded.

use std::sync::Arc;

use russh::{ChannelId, ChannelMsg};
use tokio::sync::mpsc;

use super::channel::{ChannelInput, Relays, terminated};
use crate::recorder::{PendingEvent, RecorderMsg, now_micros};
use crate::recording::{Direction, EventKind};

/// How long the target has to answer the gateway's close of a forward.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The two ends of a forward, as the recording names them.
pub struct Endpoints {
    /// Where the agent's client accepted the connection (`ADDR:PORT`).
    pub from: String,
    /// The host and port the target connects to.
    pub to: String,
}

fn event(id: ChannelId, ends: &Endpoints, counts: (u64, u64), outcome: &str) -> PendingEvent {
    PendingEvent {
        at: now_micros(),
        dir: Direction::Gateway,
        kind: EventKind::PortForward {
            channel: Some(u32::from(id)),
            forward: "direct-tcpip".into(),
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
pub async fn opening(relays: &Relays, id: ChannelId, ends: &Endpoints) -> Result<(), String> {
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

/// Record a forward that did not open.
pub async fn failed(relays: &Relays, id: ChannelId, ends: &Endpoints, why: &str) {
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
    client: russh::Channel<russh::server::Msg>,
    upstream: russh::Channel<russh::client::Msg>,
    mut inbox: mpsc::Receiver<ChannelInput>,
    ends: Endpoints,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (_, client_wr) = client.split();
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
                        up_wr.data_bytes(d).await.is_ok()
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
        let e = event(id, &ends, (bytes_in, bytes_out), "closed");
        relays
            .recorder
            .send(RecorderMsg::Events(relays.session, vec![e]))
            .await;
    })
}
