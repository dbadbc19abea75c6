//! SIGHUP: reload what can change under running sessions.
//!
//! The config file is loaded and validated again; if it has any problem,
//! nothing changes and each problem is logged. Otherwise:
//!
//! - issuers (`[[auth.oidc]]`) are replaced: unchanged ones keep their key
//!   caches, new or changed ones start fresh, and every issuer's keys are
//!   loaded again (a `jwks_file` is reread, a JWKS refetched);
//! - roles are replaced: the next session is authorized against them, live
//!   sessions keep the grant they had;
//! - the listeners' TLS certificate and key are reread.
//!
//! Listeners, connections, policies, limits, operators, `[auth.ssh]` and
//! recording settings take effect at the next start; the log says so.

use std::sync::Arc;

use crate::oidc::OidcVerifier;
use crate::tls::ListenerCert;

/// What a reload touches.
pub struct Reloadable {
    pub config_path: std::path::PathBuf,
    pub verifier: Arc<OidcVerifier>,
    pub gateway: Arc<gatehouse_actors::gateway::Gateway>,
    pub cert: Arc<ListenerCert>,
}

impl Reloadable {
    pub async fn reload(&self) {
        tracing::info!(config = %self.config_path.display(), "SIGHUP: reloading");
        let cfg = match crate::config::load(&self.config_path) {
            Ok(cfg) => cfg,
            Err(e) => {
                for p in &e.problems {
                    tracing::error!("reload refused, the running configuration stays: {p}");
                }
                return;
            }
        };
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        match self.verifier.replace(cfg.issuers) {
            Ok(fresh) => {
                for issuer in self.verifier.issuers().iter() {
                    let new = fresh.iter().any(|f| Arc::ptr_eq(f, issuer));
                    match issuer.refresh().await {
                        Ok(n) => tracing::info!(
                            issuer = issuer.name(),
                            keys = n,
                            new,
                            "identity provider keys reloaded"
                        ),
                        Err(e) => tracing::error!(
                            issuer = issuer.name(),
                            "identity provider keys not reloaded: {e}"
                        ),
                    }
                }
            }
            Err(e) => tracing::error!("issuers not reloaded: {e}"),
        }
        let roles = cfg.roles.len();
        self.gateway.roles.replace(cfg.roles);
        match self.cert.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => tracing::error!("TLS certificate not reloaded, the old one stays: {e:#}"),
        }
        tracing::info!(
            roles,
            "reloaded issuers, roles and the TLS certificate; listeners, connections, policies, limits, operators, [auth.ssh] and recording settings change at the next start"
        );
    }
}
