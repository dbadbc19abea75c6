//! The up pump: the agent's inputs (bytes, EOF, resizes, signals,
//! requests) taken in arrival order and passed to the target.

use std::collections::VecDeque;

use russh::ChannelWriteHalf;
use tokio::sync::mpsc;

use super::{ChannelInput, Relay, signal_name, terminated};
use crate::recording::{Direction, EventKind};
use crate::ssh::record::Stream;

impl Relay {
    /// Agent → target, in order.
    pub(super) async fn up(
        &self,
        mut inbox: mpsc::Receiver<ChannelInput>,
        up: &ChannelWriteHalf<russh::client::Msg>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) {
        let mut terminate = self.relays.terminate.clone();
        // Input held while a shell line waited for approval, judged next.
        let mut backlog = VecDeque::new();
        loop {
            let input = match backlog.pop_front() {
                Some(i) => Some(i),
                None => tokio::select! {
                    i = inbox.recv() => i,
                    _ = terminated(&mut terminate) => return,
                },
            };
            let Some(input) = input else { return };
            let ok = match input {
                ChannelInput::Data(data) => {
                    if let Some(e) = self.data_event(Stream::Stdin, &data) {
                        self.send_events(vec![e]).await;
                    }
                    self.scp_bytes(true, &data).await;
                    if self.is_sftp() {
                        self.sftp_up(data, up, client).await
                    } else if self.watching() {
                        self.shell_input(data, up, client, &mut inbox, &mut backlog)
                            .await
                    } else {
                        up.data_bytes(data).await.is_ok()
                    }
                }
                ChannelInput::ExtendedData(ext, data) => {
                    up.extended_data_bytes(ext, data).await.is_ok()
                }
                ChannelInput::Eof if self.watching() => {
                    self.shell_eof(up, client, &mut inbox, &mut backlog).await
                }
                ChannelInput::Eof => up.eof().await.is_ok(),
                ChannelInput::Close => {
                    let _ = up.close().await;
                    return;
                }
                ChannelInput::WindowChange {
                    cols,
                    rows,
                    pix_width,
                    pix_height,
                } => {
                    self.tap_note(
                        Direction::Client,
                        EventKind::SshResize {
                            channel: self.channel(),
                            cols,
                            rows,
                        },
                    )
                    .await;
                    self.resize_watch(cols, rows);
                    up.window_change(cols, rows, pix_width, pix_height)
                        .await
                        .is_ok()
                }
                ChannelInput::Signal(sig) => {
                    self.tap_note(
                        Direction::Client,
                        EventKind::SshSignal {
                            channel: self.channel(),
                            signal: signal_name(&sig),
                        },
                    )
                    .await;
                    up.signal(sig).await.is_ok()
                }
                ChannelInput::Request(request, reply) => {
                    self.request(request, reply, &mut inbox, &mut backlog, up, client)
                        .await
                }
            };
            if !ok {
                // The target's side of the channel is gone; the down pump
                // tells the agent.
                return;
            }
        }
    }
}
