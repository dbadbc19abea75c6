//! The admin SSH endpoint (`[listen] admin_ssh`): operators from
//! `[[operators]]` log in with their SSH keys to use the console (a shell
//! with a PTY, see `crate::console::ssh`), export and verify recordings,
//! decide held statements, and read recordings over SFTP.
//!
//! ```text
//! ssh -p 2222 alice@appliance recordings list --since 1d
//! ssh -p 2222 alice@appliance recordings export ID --format asciicast > x.cast
//! ssh -p 2222 alice@appliance recordings export --since 2026-11-01 --format archive > m.tar.zst
//! scp -P 2222 -r alice@appliance:/recordings/2026-11-26 .
//! ```
//!
//! Layout:
//! - `connection` the russh handler of one connection: key authentication,
//!   channels, exec and subsystem requests.
//! - `command` which commands an operator may run, and how they are split.
//! - `child` running them (and the SFTP view) as child processes, relayed
//!   with back-pressure.
//! - `audit` the recording of every operator action.
//!
//! The SFTP view itself (`gatehouse recordings sftp-server`) lives in
//! `crate::sftp_view`.

mod audit;
mod child;
mod command;
mod connection;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use gatehouse_actors::recorder::RecorderHandle;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

pub use audit::Audit;
pub use child::SftpOp;

use crate::config::{LoadedConfig, OperatorKey};

/// Connections at once; more are refused at accept (logged).
const MAX_CONNECTIONS: usize = 64;
/// Of those, connections not logged in yet: strangers cannot take the
/// slots operators need.
const MAX_UNAUTHENTICATED: usize = 16;
/// A peer address whose login was refused is recorded once per this
/// period (every refusal is logged): a flood of bad logins cannot fill the
/// recording store.
const REFUSAL_RECORD_PERIOD: Duration = Duration::from_secs(60);
/// From accept to a successful login; a connection that takes longer is
/// dropped, so idle or stalled ones cannot hold the connection slots.
const LOGIN_GRACE: Duration = Duration::from_secs(30);

/// What every connection of the endpoint shares.
pub struct AdminSsh {
    ssh: Arc<russh::server::Config>,
    operators: Vec<OperatorKey>,
    child: child::ChildSpec,
    recorder: RecorderHandle,
    /// What an operator's console (a shell request) needs.
    console: Arc<crate::console::ConsoleDeps>,
    live: Arc<Semaphore>,
    unauthenticated: Arc<Semaphore>,
    /// When each peer address last had a refused login recorded.
    refusals: std::sync::Mutex<HashMap<IpAddr, Instant>>,
}

impl AdminSsh {
    /// Whether a refused login from `peer` should become a recording now
    /// (at most one per address per period).
    fn record_refusal(&self, peer: IpAddr) -> bool {
        let Ok(mut seen) = self.refusals.lock() else {
            return true;
        };
        let now = Instant::now();
        seen.retain(|_, at| now.duration_since(*at) < REFUSAL_RECORD_PERIOD);
        match seen.entry(peer) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(now);
                true
            }
        }
    }
}

impl AdminSsh {
    pub fn new(
        cfg: &LoadedConfig,
        recorder: RecorderHandle,
        callers: crate::control::Callers,
        console: Arc<crate::console::ConsoleDeps>,
    ) -> anyhow::Result<Arc<AdminSsh>> {
        let key = crate::keyfile::load_or_create(
            &cfg.data_dir,
            crate::keyfile::ADMIN_HOST_KEY,
            "admin SSH host key",
        )?;
        let ssh = russh::server::Config {
            methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_secs(1),
            auth_rejection_time_initial: Some(Duration::ZERO),
            max_auth_attempts: 6,
            inactivity_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(30)),
            keys: vec![key],
            nodelay: true,
            ..Default::default()
        };
        Ok(Arc::new(AdminSsh {
            ssh: Arc::new(ssh),
            operators: cfg.operators.clone(),
            child: child::spec(&cfg.config_path, callers)
                .context("locating the gatehouse binary")?,
            recorder,
            console,
            live: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            unauthenticated: Arc::new(Semaphore::new(MAX_UNAUTHENTICATED)),
            refusals: std::sync::Mutex::new(HashMap::new()),
        }))
    }
}

/// Bind the endpoint's port: done before serving anything, so a port in
/// use stops the daemon instead of leaving it up without its endpoint.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding admin SSH listener {addr}"))
}

/// Accept operators until `shutdown` turns true.
pub async fn serve(
    admin: Arc<AdminSsh>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, operators = admin.operators.len(), "admin SSH listener ready");
    }
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("admin SSH accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(slot) = admin.live.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin SSH connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let Ok(stranger) = admin.unauthenticated.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin SSH connection refused: {MAX_UNAUTHENTICATED} connections are still logging in");
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let deadline = tokio::time::Instant::now() + LOGIN_GRACE;
            let logged_in = Arc::new(AtomicBool::new(false));
            let handler =
                connection::Connection::new(admin.clone(), peer, logged_in.clone(), stranger);
            let ssh = russh::server::run_stream(admin.ssh.clone(), socket, handler);
            match tokio::time::timeout_at(deadline, ssh).await {
                Ok(Ok(session)) => {
                    let handle = session.handle();
                    let grace = tokio::spawn(async move {
                        tokio::time::sleep_until(deadline).await;
                        if !logged_in.load(Ordering::Acquire) {
                            tracing::info!(%peer, "admin SSH connection dropped: no login within {LOGIN_GRACE:?}");
                            let _ = handle
                                .disconnect(
                                    russh::Disconnect::ByApplication,
                                    "login grace time over".into(),
                                    "en".into(),
                                )
                                .await;
                        }
                    });
                    if let Err(e) = session.await {
                        tracing::info!(%peer, "admin SSH connection ended: {e}");
                    }
                    grace.abort();
                }
                Ok(Err(e)) => tracing::info!(%peer, "admin SSH handshake failed: {e}"),
                Err(_) => {
                    tracing::info!(%peer, "admin SSH connection dropped: no SSH version within {LOGIN_GRACE:?}")
                }
            }
        });
    }
}
