//! The down pump: the target's output (masked when it is text), exit
//! status or signal, request replies, EOF and close passed to the agent,
//! and the message an agent gets when its session is terminated.

use std::time::Duration;

use bytes::Bytes;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::{mpsc, watch};

use super::{Relay, signal_name, terminated};
use crate::mask::stream::StreamMasker;
use crate::recording::{Direction, EventKind};
use crate::ssh::record::Stream;

/// How long the target's EOF waits for its exit status. sshd sends EOF,
/// then the exit status, then CLOSE; an agent whose own input has ended
/// answers EOF with CLOSE at once, and russh answers that CLOSE for the
/// gateway, so an exit status arriving after it could no longer be sent
/// (OpenSSH's ControlMaster then exits 255 with no output). Held, the EOF
/// goes right after the exit status (or with the target's CLOSE, or after
/// this long when neither comes).
const EOF_HOLD: Duration = Duration::from_secs(2);

/// Output held back for masking goes out after this much silence, so a
/// prompt without a newline (or the echo of a key) still appears promptly.
/// A secret whose pieces arrive further apart than this is not joined.
const MASK_FLUSH: Duration = Duration::from_millis(50);

impl Relay {
    /// Target → agent.
    pub(super) async fn down(
        &self,
        mut up: ChannelReadHalf,
        mut injected: mpsc::Receiver<Bytes>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) {
        let mut terminate = self.relays.terminate.clone();
        // stdout and stderr maskers, made once output is known to be text.
        let mut maskers: Option<[StreamMasker; 2]> = None;
        // The target's EOF, held until its exit status (see EOF_HOLD).
        let eof_hold = tokio::time::sleep(Duration::MAX);
        tokio::pin!(eof_hold);
        let mut eof_held = false;
        loop {
            let holding = maskers
                .as_ref()
                .is_some_and(|m| m.iter().any(StreamMasker::holding));
            let msg = tokio::select! {
                m = up.wait() => m,
                Some(reply) = injected.recv() => {
                    if !self.emit(client, None, reply, &mut terminate).await {
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep(MASK_FLUSH), if holding => {
                    if !self.flush_masked(&mut maskers, client, &mut terminate).await {
                        return;
                    }
                    continue;
                }
                why = terminated(&mut terminate) => {
                    self.terminated(client, &why).await;
                    return;
                }
                _ = &mut eof_hold, if eof_held => {
                    eof_held = false;
                    if client.eof().await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if maskers.is_none()
                && self.masked_output()
                && let Some(m) = self.relays.target.policy.masker
            {
                maskers = Some([StreamMasker::new(m), StreamMasker::new(m)]);
            }
            let Some(msg) = msg else {
                // The target's connection is gone.
                tracing::info!(
                    channel = self.channel(),
                    "the target's side of the channel is gone"
                );
                self.flush_masked(&mut maskers, client, &mut terminate)
                    .await;
                let _ = client.eof().await;
                let _ = client.close().await;
                return;
            };
            let written = match msg {
                ChannelMsg::Data { data } if self.is_sftp() => {
                    self.sftp_down(data, client, &mut terminate).await
                }
                ChannelMsg::Data { data } => {
                    self.scp_bytes(false, &data).await;
                    let data = match maskers.as_mut() {
                        Some([out, _]) => Bytes::from(out.feed(&data)),
                        None => data,
                    };
                    self.emit(client, None, data, &mut terminate).await
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    let data = match maskers.as_mut() {
                        Some([_, err]) => Bytes::from(err.feed(&data)),
                        None => data,
                    };
                    self.emit(client, Some(ext), data, &mut terminate).await
                }
                ChannelMsg::Eof => {
                    eof_held = true;
                    eof_hold
                        .as_mut()
                        .reset(tokio::time::Instant::now() + EOF_HOLD);
                    self.flush_masked(&mut maskers, client, &mut terminate)
                        .await
                }
                ChannelMsg::Close => {
                    self.flush_masked(&mut maskers, client, &mut terminate)
                        .await;
                    if eof_held {
                        let _ = client.eof().await;
                    }
                    let _ = client.close().await;
                    return;
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    self.flush_masked(&mut maskers, client, &mut terminate)
                        .await;
                    self.tap_note(
                        Direction::Target,
                        EventKind::SshExit {
                            channel: self.channel(),
                            status: Some(exit_status),
                            signal: None,
                        },
                    )
                    .await;
                    client.exit_status(exit_status).await.is_ok()
                        && (!std::mem::take(&mut eof_held) || client.eof().await.is_ok())
                }
                ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    error_message,
                    lang_tag,
                } => {
                    self.flush_masked(&mut maskers, client, &mut terminate)
                        .await;
                    self.tap_note(
                        Direction::Target,
                        EventKind::SshExit {
                            channel: self.channel(),
                            status: None,
                            signal: Some(signal_name_of(&signal_name)),
                        },
                    )
                    .await;
                    self.relays
                        .server
                        .exit_signal_request(
                            self.id,
                            signal_name,
                            core_dumped,
                            error_message,
                            lang_tag,
                        )
                        .await
                        .is_ok()
                        && (!std::mem::take(&mut eof_held) || client.eof().await.is_ok())
                }
                ChannelMsg::Success | ChannelMsg::Failure => {
                    let answer = matches!(msg, ChannelMsg::Success);
                    if let Some(tx) = self.pending.lock().ok().and_then(|mut p| p.pop_front()) {
                        let _ = tx.send(answer);
                    }
                    true
                }
                _ => true,
            };
            if !written {
                return;
            }
        }
    }

    /// Record `data` (as the agent gets it) and send it.
    pub(super) async fn emit(
        &self,
        client: &ChannelWriteHalf<russh::server::Msg>,
        ext: Option<u32>,
        data: Bytes,
        terminate: &mut watch::Receiver<Option<String>>,
    ) -> bool {
        if data.is_empty() {
            return true;
        }
        let stream = if ext.is_some() {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        if let Some(e) = self.data_event(stream, &data) {
            self.send_events(vec![e]).await;
        }
        self.shown_to_agent(&data);
        self.write(client, ext, data, terminate).await
    }

    /// Release what the maskers hold, and record what they masked.
    async fn flush_masked(
        &self,
        maskers: &mut Option<[StreamMasker; 2]>,
        client: &ChannelWriteHalf<russh::server::Msg>,
        terminate: &mut watch::Receiver<Option<String>>,
    ) -> bool {
        let Some([out, err]) = maskers.as_mut() else {
            return true;
        };
        let (o, e) = (Bytes::from(out.flush()), Bytes::from(err.flush()));
        let mut counts = out.stats.take();
        counts.extend(err.stats.take());
        if !counts.is_empty() {
            self.tap_note(Direction::Gateway, EventKind::Masked { counts })
                .await;
        }
        self.emit(client, None, o, terminate).await
            && self.emit(client, Some(1), e, terminate).await
    }

    /// Write to the agent, giving up when the session is terminated (a
    /// client that stopped reading never opens its window again).
    async fn write(
        &self,
        client: &ChannelWriteHalf<russh::server::Msg>,
        ext: Option<u32>,
        data: Bytes,
        terminate: &mut watch::Receiver<Option<String>>,
    ) -> bool {
        let send = async {
            match ext {
                None => client.data_bytes(data).await,
                Some(ext) => client.extended_data_bytes(ext, data).await,
            }
        };
        tokio::select! {
            r = send => r.is_ok(),
            why = terminated(terminate) => {
                self.terminated(client, &why).await;
                false
            }
        }
    }

    /// Tell the agent its session was ended (best effort: it may not read).
    async fn terminated(&self, client: &ChannelWriteHalf<russh::server::Msg>, why: &str) {
        let text = Bytes::from(format!("\r\ngatehouse: terminating connection: {why}\r\n"));
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = client.extended_data_bytes(1, text).await;
            let _ = client.exit_status(255).await;
            let _ = client.eof().await;
            let _ = client.close().await;
        })
        .await;
    }
}

fn signal_name_of(sig: &Sig) -> String {
    signal_name(sig)
}
