//! The agent's requests on a channel (pty, env, shell, subsystem, exec)
//! judged by policy and asked of the target, and how a refused command is
//! refused.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use russh::ChannelWriteHalf;
use tokio::sync::{mpsc, oneshot};

use super::approval::Decision;
use super::{ChannelInput, EXIT_REFUSED, Output, REQUEST_TIMEOUT, Relay, Request};
use crate::recording::{Direction, EventKind};
use crate::ssh::policy::Verdict;
use crate::ssh::sftp::SftpFilter;
use crate::ssh::sftp::scp;
use crate::ssh::sftp::scp_stream::ScpStream;

impl Relay {
    /// Send a request upstream and wait for the target's answer.
    async fn ask(
        &self,
        send: impl std::future::Future<Output = Result<(), russh::Error>>,
    ) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.push_back(tx);
        }
        if send.await.is_err() {
            return None;
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Some(answer),
            _ => None,
        }
    }

    /// Handle one request; `false` when the relay should stop.
    pub(super) async fn request(
        &self,
        request: Request,
        reply: oneshot::Sender<bool>,
        inbox: &mut mpsc::Receiver<ChannelInput>,
        backlog: &mut VecDeque<ChannelInput>,
        up: &ChannelWriteHalf<russh::client::Msg>,
        client: &ChannelWriteHalf<russh::server::Msg>,
    ) -> bool {
        let channel = self.channel();
        let policy = self.relays.target.policy.clone();
        if matches!(
            request,
            Request::Shell | Request::Exec(_) | Request::Subsystem(_)
        ) && self.started.swap(true, Ordering::AcqRel)
        {
            tracing::info!(
                channel,
                "a second shell, exec or subsystem on one channel refused"
            );
            let _ = reply.send(false);
            return true;
        }
        match request {
            Request::Pty {
                term,
                cols,
                rows,
                pix_width,
                pix_height,
                modes,
            } => {
                self.tap_note(
                    Direction::Client,
                    EventKind::SshPty {
                        channel,
                        term: term.clone(),
                        cols,
                        rows,
                    },
                )
                .await;
                if let Ok(mut p) = self.pty.lock() {
                    *p = Some((cols, rows));
                }
                let answer = self
                    .ask(up.request_pty(true, &term, cols, rows, pix_width, pix_height, &modes))
                    .await;
                let _ = reply.send(answer == Some(true));
                answer.is_some()
            }
            Request::Env { name, value } => {
                let accepted = policy.env_allowed(&name);
                self.tap_note(
                    Direction::Client,
                    EventKind::SshEnv {
                        channel,
                        name: name.clone(),
                        value: accepted.then(|| value.clone()),
                        accepted,
                    },
                )
                .await;
                if !accepted {
                    let _ = reply.send(false);
                    return true;
                }
                let answer = self.ask(up.set_env(true, name, value)).await;
                let _ = reply.send(answer == Some(true));
                answer.is_some()
            }
            Request::Shell => {
                // Under command rules each line the shell would run is
                // judged first (shell.rs).
                if policy.has_command_rules() {
                    self.watch_shell();
                }
                if !self.record_start("shell", "").await {
                    let _ = reply.send(false);
                    return true;
                }
                let answer = self.ask(up.request_shell(true)).await;
                let _ = reply.send(answer == Some(true));
                answer.is_some()
            }
            Request::Subsystem(name) => {
                // SFTP is parsed and held to path rules; another subsystem
                // could not be, so under path rules it is refused.
                if name != "sftp" && policy.has_path_rules() {
                    // What was asked for, then why it was refused.
                    let _ = self.record_start("subsystem", &name).await;
                    self.tap_note(
                        Direction::Gateway,
                        EventKind::Blocked {
                            rule: "paths".into(),
                            reason: format!("subsystem {name} refused: policy \"{}\" has path rules, which only SFTP is checked against", policy.name),
                        },
                    )
                    .await;
                    let _ = reply.send(false);
                    return true;
                }
                if !self.record_start("subsystem", &name).await {
                    let _ = reply.send(false);
                    return true;
                }
                self.set_output(Output::Protocol);
                let answer = self.ask(up.request_subsystem(true, &name)).await;
                // Installed before the next input is read, and only once
                // the target runs SFTP: nothing reaches it unjudged, and a
                // refused subsystem leaves nothing behind.
                if answer == Some(true) && name == "sftp" {
                    if let Ok(mut f) = self.sftp.lock() {
                        *f = Some(SftpFilter::new());
                    }
                    // Files are recorded as operations with their hashes,
                    // not byte for byte (their contents are not masked).
                    self.record_streams(false);
                }
                let _ = reply.send(answer == Some(true));
                answer.is_some()
            }
            Request::Exec(command) => {
                let line = String::from_utf8_lossy(&command).into_owned();
                // scp's own protocol carries file bytes on stdout: they pass
                // unchanged (transfers are recorded as such, not as text).
                if let Some(parsed) = scp::parse(&line) {
                    // Only a plain scp switches masking off: `scp -f x;
                    // cat .env` is not a transfer.
                    let stream = parsed.as_ref().ok().map(ScpStream::new);
                    if parsed.is_ok() {
                        self.set_output(Output::Protocol);
                        self.record_streams(false);
                    }
                    if let Err((rule, why)) = self.judge_scp(parsed).await {
                        let _ = reply.send(true);
                        let _ = self.record_start("exec", &line).await;
                        tracing::info!(command = %line.escape_debug(), "scp refused: {why}");
                        self.block(client, &rule, why).await;
                        return true;
                    }
                    // Its files are recorded one by one as they pass.
                    if let Ok(mut s) = self.scp.lock() {
                        *s = stream;
                    }
                } else if policy.has_path_rules() && scp::is_file_server(&line) {
                    let _ = reply.send(true);
                    let _ = self.record_start("exec", &line).await;
                    let why = format!(
                        "{} is refused under policy \"{}\", which has path rules: use sftp or scp",
                        line.split_whitespace().next().unwrap_or_default(),
                        policy.name
                    );
                    self.block(client, "paths", why).await;
                    return true;
                }
                if !self.record_start("exec", &line).await {
                    let _ = reply.send(true);
                    self.refuse(client, "the command could not be recorded; it was not run")
                        .await;
                    return true;
                }
                match policy.judge_command(&line) {
                    Verdict::Allow => {
                        self.watch_exec(&line);
                        let answer = self.ask(up.exec(true, command)).await;
                        let _ = reply.send(answer == Some(true));
                        answer.is_some()
                    }
                    Verdict::Block { rule, message } => {
                        let _ = reply.send(true);
                        let reason = format!("blocked by policy rule \"{rule}\": {message}");
                        tracing::info!(command = %line.escape_debug(), "exec blocked: {reason}");
                        self.block(client, &rule, reason).await;
                        true
                    }
                    Verdict::Approve {
                        rule,
                        timeout,
                        approvers,
                    } => {
                        // The agent's request is accepted now; the command
                        // waits, and its stdin with it.
                        let _ = reply.send(true);
                        let mut held = VecDeque::new();
                        match self
                            .approval(&line, rule, timeout, approvers, inbox, &mut held, client)
                            .await
                        {
                            Decision::Approved => {
                                self.watch_exec(&line);
                                let answer = self.ask(up.exec(true, command)).await;
                                if answer != Some(true) {
                                    self.refuse(client, "the target refused to run the command")
                                        .await;
                                    return answer.is_some();
                                }
                                if self.watching() {
                                    // Keys for a watched program are judged
                                    // like any others.
                                    backlog.extend(held);
                                    return true;
                                }
                                for input in held {
                                    let ok = match input {
                                        ChannelInput::Data(d) => up.data_bytes(d).await.is_ok(),
                                        ChannelInput::Eof => up.eof().await.is_ok(),
                                        _ => true,
                                    };
                                    if !ok {
                                        return false;
                                    }
                                }
                                true
                            }
                            Decision::Refused(reason) => {
                                self.refuse(client, &reason).await;
                                true
                            }
                        }
                    }
                }
            }
        }
    }

    /// Record that policy refused what the channel asked for, and refuse it.
    async fn block(&self, client: &ChannelWriteHalf<russh::server::Msg>, rule: &str, why: String) {
        self.tap_note(
            Direction::Gateway,
            EventKind::Blocked {
                rule: rule.to_owned(),
                reason: why.clone(),
            },
        )
        .await;
        self.refuse(client, &why).await;
    }

    /// Tell the agent on stderr why its command did not run, exit 126,
    /// and close the channel.
    async fn refuse(&self, client: &ChannelWriteHalf<russh::server::Msg>, why: &str) {
        let text = format!("gatehouse: {why}\r\n");
        let _ = client.extended_data_bytes(1, Bytes::from(text)).await;
        self.tap_note(
            Direction::Gateway,
            EventKind::SshExit {
                channel: self.channel(),
                status: Some(EXIT_REFUSED),
                signal: None,
            },
        )
        .await;
        let _ = client.exit_status(EXIT_REFUSED).await;
        let _ = client.eof().await;
        let _ = client.close().await;
    }
}
