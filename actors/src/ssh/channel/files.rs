//! A channel's file transfers: SFTP followed through [`SftpFilter`] in
//! both directions, legacy scp judged by its command line, and the file
//! operations both record.

use bytes::Bytes;
use russh::ChannelWriteHalf;
use tokio::sync::watch;

use super::Relay;
use crate::recording::{Direction, EventKind};
use crate::ssh::sftp::FileOp;
use crate::ssh::sftp::SftpFilter;
use crate::ssh::sftp::scp::{self, ScpDirection};

/// How long SFTP requests wait for the target to say where the login
/// directory is, and how often the relay looks.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const PROBE_POLL: std::time::Duration = std::time::Duration::from_millis(2);

impl Relay {
    pub(super) fn is_sftp(&self) -> bool {
        self.sftp.lock().map(|f| f.is_some()).unwrap_or(false)
    }

    /// Record file operations.
    async fn file_ops(&self, protocol: &str, ops: Vec<FileOp>) {
        if ops.is_empty() {
            return;
        }
        let channel = self.channel();
        let events = match self.tap.lock() {
            Ok(t) => ops
                .into_iter()
                .map(|op| {
                    t.event(
                        Direction::Gateway,
                        EventKind::FileOp {
                            channel,
                            protocol: protocol.into(),
                            op: op.op,
                            path: op.path,
                            to: op.to,
                            flags: op.flags,
                            bytes: op.bytes,
                            sha256: op.sha256,
                            outcome: op.outcome,
                        },
                    )
                })
                .collect(),
            Err(_) => return,
        };
        self.send_events(events).await;
    }

    /// The agent's SFTP bytes: whole requests the policy allows go to the
    /// target, refused ones are answered here. `false` ends the relay.
    pub(super) async fn sftp_up(
        &self,
        data: Bytes,
        up: &ChannelWriteHalf<russh::client::Msg>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) -> bool {
        let policy = self.relays.target.policy.clone();
        let mut data = data;
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        loop {
            let result = match self.sftp.lock() {
                Ok(mut f) => match f.as_mut() {
                    Some(f) => f.from_agent(&policy, &data),
                    None => return false,
                },
                Err(_) => return false,
            };
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    self.sftp_failed(client, "agent", &e.to_string()).await;
                    let _ = up.close().await;
                    return false;
                }
            };
            let waiting = out.waiting;
            if !self.sftp_sent(out, up).await {
                return false;
            }
            if !waiting {
                return true;
            }
            // Requests wait for the login directory; the down pump learns
            // it from the target's answer meanwhile.
            data = Bytes::new();
            loop {
                tokio::time::sleep(PROBE_POLL).await;
                let still = self
                    .sftp
                    .lock()
                    .ok()
                    .and_then(|f| f.as_ref().map(SftpFilter::waiting))
                    .unwrap_or(false);
                if !still {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    if let Ok(mut f) = self.sftp.lock()
                        && let Some(f) = f.as_mut()
                    {
                        f.give_up_waiting();
                    }
                    break;
                }
            }
        }
    }

    /// Send what the filter made of the agent's bytes.
    async fn sftp_sent(
        &self,
        out: crate::ssh::sftp::filter::FromAgent,
        up: &ChannelWriteHalf<russh::client::Msg>,
    ) -> bool {
        for (rule, message) in &out.refused {
            tracing::info!(rule = %rule, "sftp request refused: {}", message.escape_debug());
        }
        self.file_ops("sftp", out.ops).await;
        for reply in out.replies {
            if self.inject.send(Bytes::from(reply)).await.is_err() {
                return false;
            }
        }
        out.forward.is_empty() || up.data_bytes(Bytes::from(out.forward)).await.is_ok()
    }

    /// The target's SFTP bytes: whole replies go to the agent.
    pub(super) async fn sftp_down(
        &self,
        data: Bytes,
        client: &ChannelWriteHalf<russh::server::Msg>,
        terminate: &mut watch::Receiver<Option<String>>,
    ) -> bool {
        let result = match self.sftp.lock() {
            Ok(mut f) => match f.as_mut() {
                Some(f) => f.from_target(&data),
                None => return false,
            },
            Err(_) => return false,
        };
        match result {
            Ok(out) => {
                self.file_ops("sftp", out.ops).await;
                self.emit(client, None, Bytes::from(out.forward), terminate)
                    .await
            }
            Err(e) => {
                self.sftp_failed(client, "target", &e.to_string()).await;
                false
            }
        }
    }

    /// SFTP that cannot be followed ends the channel: what the gateway
    /// cannot read, it cannot hold to policy.
    async fn sftp_failed(
        &self,
        client: &ChannelWriteHalf<russh::server::Msg>,
        side: &str,
        why: &str,
    ) {
        tracing::warn!(side, "sftp channel closed: {why}");
        self.tap_note(
            Direction::Gateway,
            EventKind::Error {
                severity: "ERROR".into(),
                code: "sftp".into(),
                message: format!("from the {side}: {why}"),
            },
        )
        .await;
        let _ = client
            .extended_data_bytes(1, Bytes::from(format!("gatehouse: sftp closed: {why}\r\n")))
            .await;
        let _ = client.eof().await;
        let _ = client.close().await;
    }

    /// Follow a legacy scp transfer, before its bytes are passed on: the
    /// source's (the agent's for an upload, the target's for a download)
    /// and the receiver's answers. Each file is recorded once the receiver
    /// confirmed it.
    pub(super) async fn scp_bytes(&self, from_agent: bool, data: &[u8]) {
        let ops = match self.scp.lock() {
            Ok(mut s) => match s.as_mut() {
                Some(stream) => {
                    let source = match stream.direction() {
                        ScpDirection::Upload => from_agent,
                        ScpDirection::Download => !from_agent,
                    };
                    if source {
                        stream.feed(data)
                    } else {
                        stream.answer(data)
                    }
                }
                None => return,
            },
            Err(_) => return,
        };
        self.file_ops("scp", ops).await;
    }

    /// The channel ended: a file cut short is recorded as such.
    pub(super) async fn scp_finish(&self) {
        let ops = match self.scp.lock() {
            Ok(mut s) => s.as_mut().map(|stream| stream.finish()).unwrap_or_default(),
            Err(_) => return,
        };
        self.file_ops("scp", ops).await;
    }

    /// Judge a legacy scp command's paths; record the transfer it starts.
    pub(super) async fn judge_scp(
        &self,
        parsed: Result<scp::ScpCommand, String>,
    ) -> Result<(), (String, String)> {
        let policy = &self.relays.target.policy;
        let rules = policy.has_path_rules();
        let command = match parsed {
            Ok(c) => c,
            Err(why) if rules => {
                return Err((
                    "paths".into(),
                    format!("scp refused under path rules: {why}"),
                ));
            }
            Err(_) => return Ok(()),
        };
        let (op, write) = match command.direction {
            ScpDirection::Upload => ("upload", true),
            ScpDirection::Download => ("download", false),
        };
        let mut ops = Vec::new();
        let mut verdict = Ok(());
        for path in &command.paths {
            let judged = if rules && !path.starts_with('/') {
                Err((
                    "paths".to_owned(),
                    format!(
                        "scp to or from the relative path {path:?} is refused under path rules; use an absolute path"
                    ),
                ))
            } else {
                // The names of files an upload writes, and of a tree's
                // files, travel in the scp stream: anything a rule
                // protects below the path refuses the transfer.
                policy.judge_path(path, write).and_then(|()| {
                    if write || command.recursive {
                        policy.guards_below(path, write, command.recursive)
                    } else {
                        Ok(())
                    }
                })
            };
            let outcome = match &judged {
                Ok(()) => "started".to_owned(),
                Err((rule, _)) => format!("denied: {rule}"),
            };
            ops.push(FileOp {
                op: op.into(),
                path: crate::ssh::policy::normalize_path(path),
                to: None,
                flags: None,
                bytes: 0,
                sha256: None,
                outcome,
            });
            if verdict.is_ok() {
                verdict = judged;
            }
        }
        self.file_ops("scp", ops).await;
        verdict
    }
}
