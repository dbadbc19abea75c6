//! `gatehouse serve`: wire the actor system and run until SIGTERM/SIGINT.
//!
//! Threads: the actix system thread runs the registry, the listener and
//! signal handling; one worker arbiter per core runs session actors; the
//! recorder has its own thread. Shutdown: stop accepting, let sessions
//! finish within `limits.shutdown_grace`, then end the rest with 57P01 and
//! record that, flush the recorder, exit.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use gatehouse_actors::access::Roles;
use gatehouse_actors::approval::ApprovalBroker;
use gatehouse_actors::gateway::Gateway;
use gatehouse_actors::pg::PgListener;
use gatehouse_actors::pg::cancel::CancelMap;
use gatehouse_actors::recorder::Recorder;
use gatehouse_actors::registry::{KillAll, List, Registry};
use gatehouse_actors::ssh::{SshListener, SshService};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::LoadedConfig;
use crate::oidc::{Issuer, OidcVerifier};

pub fn run(cfg: LoadedConfig) -> anyhow::Result<()> {
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data_dir {}", cfg.data_dir.display()))?;
    // Keys, recordings and the control socket live here: owner only.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", cfg.data_dir.display()))?;
    }
    if cfg.mask_key.1 {
        crate::config::save_mask_key(&cfg.data_dir, &cfg.mask_key.0)
            .context("writing the mask hash key")?;
    }
    let system = System::new();
    let result = system.block_on(serve(cfg));
    System::current().stop();
    result
}

async fn serve(cfg: LoadedConfig) -> anyhow::Result<()> {
    // Handlers first: a SIGHUP while starting must not kill the daemon.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let key = crate::recordings::signing_key(&cfg.data_dir)?;
    let public_key = key.public_key();
    let recorder = Recorder::start(
        &cfg.data_dir.join("recordings.redb"),
        cfg.recorder.clone(),
        key,
    )
    .context("opening the recording store")?;

    let verifier = Arc::new(
        OidcVerifier::new(cfg.issuers.clone(), cfg.limits.startup_timeout)
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    // Every provider at once: a start waits for the slowest, not the sum.
    futures_util::future::join_all(verifier.issuers().iter().map(|i| load_keys(i))).await;
    {
        let verifier = verifier.clone();
        actix::spawn(async move {
            let mut tick = tokio::time::interval(crate::oidc::REFRESH_PERIOD);
            tick.tick().await;
            loop {
                tick.tick().await;
                for issuer in verifier.issuers().iter() {
                    if let Err(e) = issuer.refresh().await {
                        tracing::warn!(issuer = issuer.name(), "periodic key refresh failed: {e}");
                    }
                }
            }
        });
    }

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.push(cfg.raw.appliance.name.clone());
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_owned());
        }
    }
    let cert = crate::tls::ListenerCert::load(cfg.tls_files.as_ref(), &cfg.data_dir, &names)
        .context("preparing the TLS certificate")?;

    let callers = crate::control::Callers::default();
    let registry = Registry::default().start();
    let approvals = ApprovalBroker::new(cfg.approvers.clone()).start();
    let console = Arc::new(crate::console::ConsoleDeps {
        registry: registry.clone(),
        broker: approvals.clone(),
        recorder: recorder.clone(),
        store_path: cfg.data_dir.join("recordings.redb"),
        public_key,
        appliance: cfg.raw.appliance.name.clone(),
    });
    {
        let path = crate::control::socket_path(&cfg.data_dir);
        let (recorder, registry, approvals, callers, console) = (
            recorder.clone(),
            registry.clone(),
            approvals.clone(),
            callers.clone(),
            console.clone(),
        );
        actix::spawn(async move {
            if let Err(e) =
                crate::control::serve(path, recorder, registry, approvals, callers, console).await
            {
                tracing::error!("control socket unavailable: {e:#}");
            }
        });
    }
    let admin_endpoint = match cfg.admin_listen {
        Some(addr) => Some((
            crate::admin::AdminSsh::new(&cfg, recorder.clone(), callers.clone(), console)
                .context("preparing the admin SSH endpoint")?,
            crate::admin::bind(addr).await?,
        )),
        None => None,
    };
    let ssh = match cfg.ssh_listen {
        Some(addr) => Some((
            Arc::new(ssh_service(&cfg)?),
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding SSH listener {addr}"))?,
        )),
        None => None,
    };
    // PostgreSQL's own TLS records are at most 8 KiB; some drivers' read
    // loops depend on it (see `pg::stream::MAX_TLS_RECORD`).
    let mut pg_tls = cert.server_config(&[]);
    pg_tls.max_fragment_size = Some(gatehouse_actors::pg::stream::MAX_TLS_RECORD);
    let gw = Arc::new(Gateway {
        verifier: verifier.clone(),
        connections: cfg.connections,
        roles: Roles::new(cfg.roles),
        limits: cfg.limits.clone(),
        admissions: gatehouse_actors::listener::Admissions::new(cfg.limits.max_sessions),
        tls: Some(tokio_rustls::TlsAcceptor::from(Arc::new(pg_tls))),
        allow_plaintext: cfg.raw.listen.postgres_plaintext,
        recorder: recorder.clone(),
        registry: registry.clone(),
        cancels: CancelMap::default(),
        approvals: Some(approvals.clone()),
        ssh: ssh.as_ref().map(|(svc, _)| svc.clone()),
    });

    let worker_count = cfg
        .raw
        .limits
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let workers: Vec<_> = (0..worker_count).map(|_| Arbiter::new().handle()).collect();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let shutdown_rx_admin = shutdown_rx.clone();
    let health = crate::api::Health::new(
        recorder.clone(),
        registry.clone(),
        approvals,
        shutdown_rx.clone(),
    );
    let mut accepts = Vec::new();
    if let Some((_, listener)) = ssh {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "SSH listener ready");
        }
        let accepting = health.listener("SSH");
        let ssh_listener = SshListener::new(gw.clone(), workers.clone());
        let shutdown = shutdown_rx.clone();
        accepts.push(actix::spawn(async move {
            ssh_listener.run(listener, shutdown).await;
            accepting.down();
        }));
    }
    // Bound last: tests and the demo take the PostgreSQL port accepting
    // connections as the daemon being ready.
    if let Some(addr) = cfg.pg_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding PostgreSQL listener {addr}"))?;
        tracing::info!(%addr, "PostgreSQL listener ready");
        let accepting = health.listener("PostgreSQL");
        let pg_listener = PgListener::new(gw.clone(), workers.clone());
        accepts.push(actix::spawn(async move {
            pg_listener.run(listener, shutdown_rx).await;
            accepting.down();
        }));
    }

    let admin = admin_endpoint.map(|(endpoint, listener)| {
        let accepting = health.listener("admin SSH");
        actix::spawn(async move {
            crate::admin::serve(endpoint, listener, shutdown_rx_admin).await;
            accepting.down();
        })
    });

    if let Some(settings) = &cfg.api {
        crate::api::start(settings, &cfg.data_dir, health, verifier.clone(), &cert).await?;
    }

    let reloadable = crate::reload::Reloadable {
        config_path: cfg.config_path.clone(),
        verifier,
        gateway: gw.clone(),
        cert,
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: draining");
                break;
            }
            _ = hup.recv() => reloadable.reload().await,
        }
    }
    let _ = shutdown_tx.send(true);
    for accept in accepts {
        let _ = accept.await;
    }
    if let Some(admin) = admin {
        let _ = admin.await;
    }

    let grace = cfg.limits.shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let live = registry.send(List).await.map(|l| l.len()).unwrap_or(0);
        if live == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let n = registry
                .send(KillAll {
                    reason: "the gateway is shutting down".into(),
                })
                .await
                .unwrap_or(0);
            tracing::info!(sessions = n, "grace period over; ending remaining sessions");
            // Give killed sessions a moment to tell their clients and record.
            let until = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < until
                && registry.send(List).await.map(|l| l.len()).unwrap_or(0) > 0
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recorder.shutdown().await;
    for w in workers {
        w.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

/// The SSH listener's host key and the user CA (both created in `data_dir`
/// on first start, fingerprints logged) and the server settings.
fn ssh_service(cfg: &LoadedConfig) -> anyhow::Result<SshService> {
    let host_key = crate::keyfile::load_or_create(
        &cfg.data_dir,
        crate::keyfile::SSH_HOST_KEY,
        "SSH host key",
    )?;
    let user_ca =
        crate::keyfile::load_or_create(&cfg.data_dir, crate::keyfile::SSH_USER_CA, "SSH user CA")?;
    let config = russh::server::Config {
        methods: russh::MethodSet::from(
            &[
                russh::MethodKind::PublicKey,
                russh::MethodKind::Password,
                russh::MethodKind::KeyboardInteractive,
            ][..],
        ),
        // Refused tokens and certificates take a second, in the handler
        // (`REFUSAL_DELAY`); the "none" probe and the plain key OpenSSH
        // signs before offering its certificate are refused at once.
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        // Idle agents are kept (long-running shells); dead ones are found
        // by keepalives: 3 unanswered, 30 s apart.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        keys: vec![host_key],
        nodelay: true,
        ..Default::default()
    };
    Ok(SshService {
        config: Arc::new(config),
        user_ca: Some(user_ca.public_key().clone()),
    })
}

/// First load of an issuer's keys. A provider that cannot be reached yet
/// is not fatal: its tokens are refused until a refresh succeeds.
async fn load_keys(issuer: &Issuer) {
    let settings = issuer.settings();
    match issuer.refresh().await {
        Ok(n) => tracing::info!(
            issuer = %settings.name,
            iss = %settings.issuer,
            keys = n,
            "identity provider keys loaded"
        ),
        Err(e) => tracing::error!(
            issuer = %settings.name,
            "identity provider not reachable yet ({e}); its tokens are refused until it is"
        ),
    }
}
