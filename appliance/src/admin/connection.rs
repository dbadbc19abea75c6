//! One admin SSH connection: who it is, its channels, what they run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gatehouse_actors::recording::EventKind;
use russh::keys::PublicKey;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};

use super::AdminSsh;
use super::audit::Audit;
use super::command::{HELP, Plan, plan};

pub struct Connection {
    admin: Arc<AdminSsh>,
    peer: String,
    /// The operator, once authenticated, and the recording of their actions.
    operator: Option<(String, Audit)>,
    /// The last user name and refusal, for the record of a failed login.
    refused: Option<(String, String)>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// PTYs requested, per channel: a shell with one runs the console.
    ptys: HashMap<ChannelId, crate::console::ssh::Pty>,
    /// Set at login; the endpoint drops connections that never get here.
    logged_in: Arc<AtomicBool>,
    /// Held until login: the endpoint's count of connections logging in.
    stranger: Option<tokio::sync::OwnedSemaphorePermit>,
    peer_ip: std::net::IpAddr,
}

impl Connection {
    pub fn new(
        admin: Arc<AdminSsh>,
        peer: SocketAddr,
        logged_in: Arc<AtomicBool>,
        stranger: tokio::sync::OwnedSemaphorePermit,
    ) -> Connection {
        Connection {
            admin,
            peer: peer.to_string(),
            peer_ip: peer.ip(),
            stranger: Some(stranger),
            operator: None,
            refused: None,
            channels: HashMap::new(),
            ptys: HashMap::new(),
            logged_in,
        }
    }

    /// The operator `user` if `key` is theirs.
    fn operator_for(&self, user: &str, key: &PublicKey) -> Option<&str> {
        self.admin
            .operators
            .iter()
            .find(|o| o.name == user && o.key.key_data() == key.key_data())
            .map(|o| o.name.as_str())
    }

    fn refuse(&mut self, user: &str, key: &PublicKey) -> Auth {
        let why = if self.admin.operators.iter().any(|o| o.name == user) {
            format!(
                "key {} is not operator {user:?}'s key",
                key.fingerprint(Default::default())
            )
        } else {
            format!("no operator named {user:?}")
        };
        tracing::warn!(peer = %self.peer, "admin SSH login refused: {why}");
        self.refused = Some((user.to_owned(), why));
        Auth::reject()
    }

    fn audit(&self) -> Option<(String, Audit)> {
        self.operator.clone()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        match (&self.operator, self.refused.take()) {
            (Some((name, _)), _) => {
                tracing::info!(peer = %self.peer, operator = %name, "admin SSH connection closed");
            }
            (None, Some((user, why))) => {
                if self.admin.record_refusal(self.peer_ip) {
                    Audit::refused(&self.admin.recorder, &self.peer, &user, why)
                }
            }
            (None, None) => {}
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.operator_for(user, offer.public_key).is_some() {
            Ok(Auth::Accept)
        } else {
            Ok(self.refuse(user, offer.public_key))
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(name) = self.operator_for(user, key.public_key).map(str::to_owned) else {
            return Ok(self.refuse(user, key.public_key));
        };
        // SHA-1 RSA signatures (`ssh-rsa`) are forgeable in principle and
        // refused, as OpenSSH does by default; rsa-sha2-* are fine.
        if matches!(key.algorithm, russh::keys::Algorithm::Rsa { hash: None }) {
            let why = "ssh-rsa (SHA-1) signatures are refused; use rsa-sha2-256/512".to_owned();
            tracing::warn!(peer = %self.peer, operator = %name, "admin SSH login refused: {why}");
            self.refused = Some((user.to_owned(), why));
            return Ok(Auth::reject());
        }
        tracing::info!(peer = %self.peer, operator = %name, "admin SSH login");
        let audit = Audit::open(self.admin.recorder.clone(), &self.peer, user, &name);
        self.operator = Some((name, audit));
        self.refused = None;
        self.logged_in.store(true, Ordering::Release);
        self.stranger = None;
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.ptys.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.ptys
            .insert(channel, crate::console::ssh::Pty::new(term, cols, rows));
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(ch), Some((operator, audit))) = (self.channels.remove(&channel), self.audit())
        else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let Some(pty) = self.ptys.remove(&channel) else {
            // No terminal to draw on: say how to get one.
            audit.note(EventKind::AdminCommand {
                command: "(shell without a terminal)".into(),
            });
            tokio::spawn(async move {
                let text = format!(
                    "The operator console needs a terminal: ssh -t. Or run a command:\r\n{}",
                    HELP.replace('\n', "\r\n")
                );
                reply(&ch, Some(&audit), text.as_bytes(), b"", 1).await;
            });
            return Ok(());
        };
        let deps = self.admin.console.clone();
        let via = format!("console over admin ssh from {}", self.peer);
        tokio::spawn(async move {
            // Nothing is shown before the console's opening is durable.
            if let Err(e) = audit
                .durably(EventKind::AdminCommand {
                    command: "console".into(),
                })
                .await
            {
                tracing::error!(%operator, "console refused: it could not be recorded ({e})");
                let why = b"gatehouse: refused: the console could not be recorded\r\n";
                reply(&ch, None, b"", why, 1).await;
                return;
            }
            tracing::info!(%operator, "console opened over admin SSH");
            let op = crate::console::Operator {
                name: Some(operator),
                via,
            };
            crate::console::ssh::run_console(deps, ch, pty, op, audit).await;
        });
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(ch), Some((operator, audit))) = (self.channels.remove(&channel), self.audit())
        else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).into_owned();
        let spec = self.admin.child.clone();
        let via = format!("admin ssh from {}", self.peer);
        tokio::spawn(async move {
            // Nothing runs before its record is durable.
            if let Err(e) = audit
                .durably(EventKind::AdminCommand {
                    command: line.clone(),
                })
                .await
            {
                tracing::error!(%operator, "admin command refused: it could not be recorded ({e})");
                let why = b"gatehouse: refused: the command could not be recorded\n";
                reply(&ch, None, b"", why, 1).await;
                return;
            }
            tracing::info!(%operator, command = %line.escape_debug(), "admin command");
            match plan(&line, &operator) {
                Ok(Plan::Run(args)) => super::child::exec(&spec, &args, ch, &audit, via).await,
                Ok(Plan::Help) => reply(&ch, Some(&audit), HELP.as_bytes(), b"", 0).await,
                Err(why) => {
                    tracing::warn!(%operator, "admin command refused: {why}");
                    let why = format!("gatehouse: {why}\n");
                    reply(&ch, Some(&audit), b"", why.as_bytes(), 2).await;
                }
            }
        });
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(ch), Some((_, audit))) = (self.channels.remove(&channel), self.audit()) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        if name != "sftp" {
            tracing::info!(peer = %self.peer, subsystem = %name.escape_debug(), "unknown subsystem refused");
            session.channel_failure(channel)?;
            return Ok(());
        }
        if let Err(e) = audit
            .durably(EventKind::Sftp {
                op: "start".into(),
                path: "/".into(),
                outcome: "ok".into(),
                bytes: 0,
            })
            .await
        {
            tracing::error!("SFTP refused: it could not be recorded ({e})");
            session.channel_failure(channel)?;
            return Ok(());
        }
        session.channel_success(channel)?;
        let spec = self.admin.child.clone();
        tokio::spawn(async move { super::child::sftp(&spec, ch, audit).await });
        Ok(())
    }
}

/// Answer a channel with fixed output and an exit status, record the exit
/// (when there is a recording to write it to), and close the channel.
async fn reply(ch: &Channel<Msg>, audit: Option<&Audit>, out: &[u8], err: &[u8], status: u32) {
    if !out.is_empty() {
        let _ = ch.data_bytes(out.to_vec()).await;
    }
    if !err.is_empty() {
        let _ = ch.extended_data_bytes(1, err.to_vec()).await;
    }
    if let Some(audit) = audit {
        audit.note(EventKind::AdminExit {
            status,
            bytes: out.len() as u64,
        });
    }
    let _ = ch.exit_status(status).await;
    let _ = ch.eof().await;
    let _ = ch.close().await;
}
