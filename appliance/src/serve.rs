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
use gatehouse_actors::approval::ApprovalBroker;
use gatehouse_actors::gateway::Gateway;
use gatehouse_actors::pg::PgListener;
use gatehouse_actors::pg::cancel::CancelMap;
use gatehouse_actors::recorder::Recorder;
use gatehouse_actors::registry::{KillAll, List, Registry};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::LoadedConfig;
use crate::oidc::{OidcSettings, OidcVerifier};

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
    let key = crate::recordings::signing_key(&cfg.data_dir)?;
    let recorder = Recorder::start(
        &cfg.data_dir.join("recordings.redb"),
        cfg.recorder.clone(),
        key,
    )
    .context("opening the recording store")?;

    let verifier = Arc::new(OidcVerifier::new(OidcSettings {
        issuer: cfg.issuer.clone(),
        audience: cfg.raw.auth.oidc.audience.clone(),
        groups_claim: cfg.raw.auth.oidc.groups_claim.clone(),
        algorithms: cfg.algorithms.clone(),
    })?);
    match verifier.refresh().await {
        Ok(n) => tracing::info!(issuer = %cfg.issuer, keys = n, "identity provider keys loaded"),
        Err(e) => tracing::error!(
            "identity provider not reachable yet ({e}); tokens are refused until it is"
        ),
    }
    {
        let verifier = verifier.clone();
        actix::spawn(async move {
            let mut tick = tokio::time::interval(crate::oidc::REFRESH_PERIOD);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = verifier.refresh().await {
                    tracing::warn!("periodic JWKS refresh failed: {e}");
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
    let tls = crate::tls::server_config(cfg.tls_files.as_ref(), &cfg.data_dir, &names)
        .context("preparing the TLS certificate")?;

    let callers = crate::control::Callers::default();
    let registry = Registry::default().start();
    let approvals = ApprovalBroker::new(cfg.approvers.clone()).start();
    {
        let path = crate::control::socket_path(&cfg.data_dir);
        let (recorder, registry, approvals, callers) = (
            recorder.clone(),
            registry.clone(),
            approvals.clone(),
            callers.clone(),
        );
        actix::spawn(async move {
            if let Err(e) =
                crate::control::serve(path, recorder, registry, approvals, callers).await
            {
                tracing::error!("control socket unavailable: {e:#}");
            }
        });
    }
    let admin_endpoint = match cfg.admin_listen {
        Some(addr) => Some((
            crate::admin::AdminSsh::new(&cfg, recorder.clone(), callers.clone())
                .context("preparing the admin SSH endpoint")?,
            crate::admin::bind(addr).await?,
        )),
        None => None,
    };
    let gw = Arc::new(Gateway {
        verifier,
        connections: cfg.pg_targets,
        roles: cfg.roles,
        limits: cfg.limits.clone(),
        tls: Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
        allow_plaintext: cfg.raw.listen.postgres_plaintext,
        recorder: recorder.clone(),
        registry: registry.clone(),
        cancels: CancelMap::default(),
        approvals: Some(approvals),
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
    let addr = cfg.pg_listen.context("listen.postgres is required")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding PostgreSQL listener {addr}"))?;
    tracing::info!(%addr, "PostgreSQL listener ready");
    let accept = actix::spawn(
        PgListener {
            gw: gw.clone(),
            workers: workers.clone(),
        }
        .run(listener, shutdown_rx),
    );

    let admin = admin_endpoint.map(|(endpoint, listener)| {
        actix::spawn(crate::admin::serve(endpoint, listener, shutdown_rx_admin))
    });

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    let _ = shutdown_tx.send(true);
    let _ = accept.await;
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
