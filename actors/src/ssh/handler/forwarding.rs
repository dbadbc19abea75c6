//! Port forwards: an allowed `direct-tcpip` forward opened on the target
//! and relayed, an agent's `-R` (`tcpip-forward`) asked of the target,
//! and refused forwards recorded.

use std::sync::Arc;

use russh::Channel;
use russh::server::Msg;
use tokio::sync::mpsc;

use super::{CHANNEL_QUEUE, MAX_CHANNELS, ServerHandler};
use crate::ssh::channel::{self, Relays};
use crate::ssh::forward;
use crate::ssh::upstream::Upstream;

impl ServerHandler {
    /// Record a refused port forward (once logged in; before, there is
    /// nothing it could have reached).
    pub(super) async fn forward_refused(&self, forward: &str, from: String, to: String) {
        if let Some(relays) = &self.relays {
            relays
                .recorder
                .send(crate::recorder::RecorderMsg::Events(
                    self.session,
                    vec![crate::recorder::PendingEvent {
                        at: crate::recorder::now_micros(),
                        dir: crate::recording::Direction::Client,
                        kind: crate::recording::EventKind::PortForward {
                            channel: None,
                            forward: forward.into(),
                            from,
                            to,
                            bytes_in: 0,
                            bytes_out: 0,
                            outcome: "refused".into(),
                        },
                    }],
                ))
                .await;
        }
    }

    /// Open an allowed `direct-tcpip` forward from the target and relay it.
    pub(super) async fn open_forward(
        &mut self,
        channel: Channel<Msg>,
        up: Arc<Upstream>,
        relays: Arc<Relays>,
        ends: forward::Endpoints,
        reply: russh::server::ChannelOpenHandle,
    ) {
        self.channels.retain(|_, tx| !tx.is_closed());
        self.tasks.retain(|t| !t.is_finished());
        let id = channel.id();
        if self.channels.len() >= MAX_CHANNELS {
            tracing::warn!(peer = %self.peer, "forward refused: {MAX_CHANNELS} channels already open on this connection");
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return;
        }
        if let Err(e) = forward::opening(&relays, Some(id), &ends).await {
            tracing::error!(peer = %self.peer, "forward refused: it could not be recorded ({e})");
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return;
        }
        let (host, port) = forward::split(&ends.to);
        let (orig, orig_port) = forward::split(&ends.from);
        let opened = tokio::time::timeout(
            channel::REQUEST_TIMEOUT,
            up.handle
                .channel_open_direct_tcpip(host, port, orig, orig_port),
        )
        .await;
        let target_channel = match opened {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, to = %ends.to.escape_debug(), "forward failed: the target refused it ({e})");
                forward::record(&relays, Some(id), &ends, &format!("failed: {e}")).await;
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                return;
            }
            Err(_) => {
                forward::record(
                    &relays,
                    Some(id),
                    &ends,
                    "failed: the target did not answer",
                )
                .await;
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        };
        tracing::info!(peer = %self.peer, to = %ends.to.escape_debug(), "port forward opened");
        let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
        self.channels.insert(id, tx);
        reply.accept().await;
        // The agent's bytes come through the handler, in order.
        let (_, client_wr) = channel.split();
        self.tasks.push(forward::spawn(
            relays,
            id,
            client_wr,
            target_channel,
            rx,
            ends,
        ));
    }

    /// Ask the target to listen for the agent's `-R`; the port it listens
    /// on (chosen by the target when the agent asked for 0) goes back to
    /// the agent, and connections to it are relayed by `forward::remote`.
    pub(super) async fn remote_forward(
        &self,
        up: &Upstream,
        relays: &Relays,
        address: &str,
        port: &mut u32,
    ) -> bool {
        let listen = format!("{address}:{port}");
        let asked = tokio::time::timeout(
            channel::REQUEST_TIMEOUT,
            up.handle.tcpip_forward(address, *port),
        )
        .await;
        let outcome = match asked {
            Ok(Ok(bound)) => {
                if *port == 0 {
                    *port = bound;
                }
                if let Ok(mut ports) = relays.remote_ports.lock() {
                    ports.insert(*port);
                }
                "listening".to_owned()
            }
            Ok(Err(e)) => format!("failed: the target refused it ({e})"),
            Err(_) => "failed: the target did not answer".to_owned(),
        };
        tracing::info!(peer = %self.peer, listen = %listen.escape_debug(), port = *port, "remote port forward: {outcome}");
        let ok = outcome == "listening";
        let ends = forward::Endpoints {
            forward: "tcpip-forward",
            from: format!("target {address}:{port}"),
            to: "agent".into(),
        };
        if ok {
            if let Err(e) = forward::opening(relays, None, &ends).await {
                tracing::error!("remote forward refused: it could not be recorded ({e})");
                let _ = up.handle.cancel_tcpip_forward(address, *port).await;
                if let Ok(mut ports) = relays.remote_ports.lock() {
                    ports.remove(port);
                }
                return false;
            }
        } else {
            forward::record(relays, None, &ends, &outcome).await;
        }
        ok
    }
}
