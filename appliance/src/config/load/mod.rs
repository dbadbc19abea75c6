//! Loading and validating the config file.
//!
//! All problems are collected, not just the first, and each names the file,
//! the line and what to do about it. Secrets are read here, once, and never
//! printed.
//!
//! # Layout
//!
//! - `mod.rs` — [`load`] and [`load_text`], which walk the file section by
//!   section (listeners, TLS, operators, limits, recordings, policies,
//!   connections, roles); the result types [`LoadedConfig`],
//!   [`ConfigError`], [`ApiSettings`] and [`OperatorKey`]; the tests of
//!   the issuer URL check (kept here so their names stay
//!   `config::load::tests::…`).
//! - `checker.rs` — `Checker`: problems and warnings with their line,
//!   paths resolved against the config file, durations parsed.
//! - `targets.rs` — a `[[connections]]` entry turned into an SSH or
//!   PostgreSQL target: required keys, credentials and passwords read from
//!   their files, host keys, TLS roots.
//! - `issuer_url.rs` — [`check_issuer_url`]: an OIDC issuer must be HTTPS
//!   unless it is on loopback.
//!
//! `targets.rs` names the config shapes `super::Connection` and
//! `super::Policy` (written when it lived in `config::load`); this module
//! imports both so those paths still resolve from there.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_actors::access::Role;
use gatehouse_actors::gateway::{Limits, Target};
use gatehouse_actors::pg::codec::FrameLimits;
use gatehouse_actors::recorder::RecorderConfig;
use gatehouse_actors::ssh::SshPolicy;

use gatehouse_actors::policy::SqlPolicy;

use super::policy::{mask_key, sql_policy, ssh_policy};
use super::{Config, Kind};
use crate::oidc::IssuerSettings;

use super::{Connection, Policy};

mod checker;
mod issuer_url;
mod targets;

pub(super) use checker::Checker;
pub use issuer_url::check_issuer_url;
use targets::{pg_target, ssh_target};

/// Smallest cap accepted for a message type: below this even ordinary
/// statements would be refused.
const MIN_MESSAGE_BYTES: usize = 1024;

/// Everything wrong with a config file.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A validated config with paths resolved and secrets loaded.
pub struct LoadedConfig {
    pub raw: Config,
    pub data_dir: PathBuf,
    pub pg_listen: Option<SocketAddr>,
    /// The agents' SSH listener, when configured.
    pub ssh_listen: Option<SocketAddr>,
    /// The admin SSH endpoint, when configured.
    pub admin_listen: Option<SocketAddr>,
    /// Who may log in there, with their parsed keys.
    pub operators: Vec<OperatorKey>,
    /// The file this was loaded from: commands run for operators read it too.
    pub config_path: PathBuf,
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// `[[auth.oidc]]`, validated.
    pub issuers: Vec<IssuerSettings>,
    /// The HTTPS API (`[listen] api`), when configured.
    pub api: Option<ApiSettings>,
    pub limits: Limits,
    pub recorder: RecorderConfig,
    /// Every connection, PostgreSQL and SSH, by name.
    pub connections: HashMap<String, Target>,
    pub roles: Vec<Role>,
    /// The key for the `hash` mask strategy, and whether it is new (serve
    /// writes it to `data_dir/mask-hash.key` before serving).
    pub mask_key: ([u8; 32], bool),
    /// Operators marked `approver`.
    pub approvers: Vec<String>,
    /// Things that are valid but worth saying (configured yet not served).
    pub warnings: Vec<String>,
}

/// What the HTTPS API serves with.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// The agents' SSH port (`[listen] ssh`), which certificates are for;
    /// without it the certificate endpoint answers 404.
    pub ssh_port: Option<u16>,
    /// `[auth.ssh] max_certificate_lifetime`.
    pub certificate_lifetime: Duration,
}

/// Default `[auth.ssh] max_certificate_lifetime`: long enough for a CI
/// job's SSH steps, short enough that a leaked certificate soon expires.
const DEFAULT_CERTIFICATE_LIFETIME: Duration = Duration::from_secs(3600);

/// An `[[operators]]` entry with its key parsed.
#[derive(Debug, Clone)]
pub struct OperatorKey {
    pub name: String,
    pub key: russh::keys::PublicKey,
    pub approver: bool,
}

/// Read, parse and validate the config file at `path`.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![format!("{}: cannot read config: {e}", path.display())],
    })?;
    load_text(path, &text)
}

/// [`load`] on text already read: `path` names the file in problems and
/// anchors relative paths (files the config names are still read). The
/// fuzz target `config_load` feeds it any text.
pub fn load_text(path: &Path, text: &str) -> Result<LoadedConfig, ConfigError> {
    let one = |p: String| ConfigError { problems: vec![p] };
    let raw: Config = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        one(format!(
            "{}:{}: {}",
            path.display(),
            line,
            e.message().trim_end()
        ))
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut c = Checker {
        file: path,
        text,
        base,
        problems: Vec::new(),
        warnings: Vec::new(),
    };

    let data_dir = c.resolve(&raw.appliance.data_dir);

    // Listeners.
    let mut pg_listen = None;
    if let Some(addr) = &raw.listen.postgres {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(a) => {
                if raw.listen.postgres_plaintext && !a.ip().is_loopback() {
                    c.problem(
                        addr,
                        "postgres_plaintext is only allowed on a loopback listener: tokens would cross the network in clear",
                    );
                }
                pg_listen = Some(a);
            }
            Err(e) => c.problem(
                addr,
                format!("listen.postgres: {e}; write e.g. \"0.0.0.0:5432\""),
            ),
        }
    }
    let mut admin_listen = None;
    if let Some(addr) = &raw.listen.admin_ssh {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(a) => admin_listen = Some(a),
            Err(e) => c.problem(
                addr,
                format!("listen.admin_ssh: {e}; write e.g. \"0.0.0.0:2222\""),
            ),
        }
    }
    let mut ssh_listen = None;
    if let Some(addr) = &raw.listen.ssh {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(a) => ssh_listen = Some(a),
            Err(e) => c.problem(addr, format!("listen.ssh: {e}; write e.g. \"0.0.0.0:22\"")),
        }
    }
    let ssh_port = ssh_listen.map(|a| a.port());
    let certificate_lifetime = c.duration(
        &raw.auth.ssh.max_certificate_lifetime,
        "auth.ssh.max_certificate_lifetime",
        DEFAULT_CERTIFICATE_LIFETIME,
    );
    if let Some(at) = &raw.auth.ssh.max_certificate_lifetime
        && certificate_lifetime < Duration::from_secs(60)
    {
        c.problem(
            at,
            "auth.ssh.max_certificate_lifetime must be at least 1m: a certificate must outlive the login it is for",
        );
    }
    let mut api = None;
    if let Some(addr) = &raw.listen.api {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(listen) => {
                api = Some(ApiSettings {
                    listen,
                    ssh_port,
                    certificate_lifetime,
                })
            }
            Err(e) => c.problem(
                addr,
                format!("listen.api: {e}; write e.g. \"0.0.0.0:8443\""),
            ),
        }
    }
    if raw.listen.postgres.is_none() && raw.listen.ssh.is_none() {
        c.problem_at(
            1,
            "listen.postgres and listen.ssh are both missing: there is nothing to serve",
        );
    }

    let tls_files = raw.tls.as_ref().and_then(|t| {
        let cert = c.existing_file(&t.cert, "tls.cert");
        let key = c.existing_file(&t.key, "tls.key");
        cert.zip(key)
    });

    let mut operators = Vec::new();
    let mut operator_names = HashSet::new();
    for op in &raw.operators {
        let name = op.name.get_ref();
        if name == gatehouse_actors::policy::NOBODY
            || name.trim().is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
        {
            c.problem(
                &op.name,
                format!(
                    "operator name {name:?} is reserved or not a user name (letters, digits, . _ -)"
                ),
            );
        }
        if !operator_names.insert(name.clone()) {
            c.problem(&op.name, format!("operator {name:?} is defined twice"));
        }
        match russh::keys::PublicKey::from_openssh(op.public_key.get_ref()) {
            Ok(key) => operators.push(OperatorKey {
                name: name.clone(),
                key,
                approver: op.approver,
            }),
            Err(e) => c.problem(
                &op.public_key,
                format!(
                    "operator {name:?}: public_key is not an OpenSSH public key ({e}); write it as in ~/.ssh/id_ed25519.pub: \"ssh-ed25519 AAAA... comment\""
                ),
            ),
        }
    }
    if admin_listen.is_some() && operators.is_empty() && c.problems.is_empty() {
        c.warnings.push(format!(
            "{}: listen.admin_ssh is configured but no [[operators]]: nobody can log in",
            path.display()
        ));
    }
    if !raw.operators.is_empty() && raw.listen.admin_ssh.is_none() {
        c.warnings.push(format!(
            "{}: operators are configured but listen.admin_ssh is not",
            path.display()
        ));
    }

    // Identity providers.
    let issuers = super::identity::issuers(&mut c, &raw.auth.oidc);

    // Limits.
    let defaults = Limits::default();
    let mut client_frames = FrameLimits::uniform(
        raw.limits
            .max_message_bytes
            .unwrap_or(gatehouse_actors::gateway::DEFAULT_MAX_MESSAGE_BYTES)
            .max(MIN_MESSAGE_BYTES),
    );
    for (name, bytes) in &raw.limits.message_bytes {
        match FrameLimits::tag_for_name(name) {
            Some(tag) => client_frames.set(tag, (*bytes.get_ref()).max(MIN_MESSAGE_BYTES)),
            None => c.problem(
                bytes,
                format!("limits.message_bytes: unknown message type {name:?}; use query, parse, bind, execute, describe, close, sync, flush, copy_data, copy_done, copy_fail, function_call, password or terminate"),
            ),
        }
    }
    let limits = Limits {
        client_frames,
        max_sessions: raw
            .limits
            .max_sessions
            .unwrap_or(defaults.max_sessions)
            .max(1),
        startup_timeout: c.duration(
            &raw.limits.startup_timeout,
            "limits.startup_timeout",
            defaults.startup_timeout,
        ),
        max_target_message_bytes: raw
            .limits
            .max_target_message_bytes
            .unwrap_or(defaults.max_target_message_bytes)
            .max(MIN_MESSAGE_BYTES),
        rows_per_statement: raw
            .limits
            .rows_per_statement
            .unwrap_or(defaults.rows_per_statement),
        shutdown_grace: c.duration(
            &raw.limits.shutdown_grace,
            "limits.shutdown_grace",
            defaults.shutdown_grace,
        ),
    };
    // A century is "forever" for recordings; larger numbers are typos.
    if raw.recordings.keep_days.is_some_and(|d| d > 36_500) {
        c.problem_at(
            1,
            "recordings.keep_days is over 36500 (a century); omit it to keep recordings forever",
        );
    }
    let recorder = RecorderConfig {
        retention: gatehouse_actors::store::retention::Retention {
            keep: raw
                .recordings
                .keep_days
                .map(|d| Duration::from_secs(d.saturating_mul(86_400))),
            max_bytes: raw.recordings.max_bytes,
        },
        flush_interval: c.duration(
            &raw.recordings.flush_interval,
            "recordings.flush_interval",
            RecorderConfig::default().flush_interval,
        ),
    };

    // Policies.
    let mask_key = mask_key(&data_dir);
    let mut sql_policies = HashMap::new();
    let mut ssh_policies = HashMap::new();
    for (name, policy) in &raw.policies {
        let sql = sql_policy(&mut c, name, policy, &mask_key.0, &raw.operators);
        let masker = sql.as_ref().and_then(|p| p.masker);
        if let Some(p) = sql {
            sql_policies.insert(name.clone(), Arc::new(p));
        }
        if let Some(p) = ssh_policy(&mut c, name, policy, masker, &raw.operators) {
            ssh_policies.insert(name.clone(), Arc::new(p));
        }
    }

    // Connections.
    let mut connections = HashMap::new();
    let mut names = HashSet::new();
    for conn in &raw.connections {
        let name = conn.name.get_ref().clone();
        if !names.insert(name.clone()) {
            c.problem(&conn.name, format!("connection {name:?} is defined twice"));
        }
        if !raw.policies.contains_key(conn.policy.get_ref()) {
            c.problem(
                &conn.policy,
                format!(
                    "connection {name:?} uses policy {:?}, which is not defined; add [policies.{}]",
                    conn.policy.get_ref(),
                    conn.policy.get_ref()
                ),
            );
        }
        match conn.kind {
            Kind::Ssh => {
                let policy = ssh_policies
                    .get(conn.policy.get_ref())
                    .cloned()
                    .unwrap_or_else(|| Arc::new(SshPolicy::allow_all(conn.policy.get_ref())));
                if let Some(t) = ssh_target(&mut c, conn, policy) {
                    connections.insert(name, Target::Ssh(Arc::new(t)));
                }
            }
            Kind::Postgres => {
                let policy = sql_policies
                    .get(conn.policy.get_ref())
                    .cloned()
                    .unwrap_or_else(|| Arc::new(SqlPolicy::allow_all(conn.policy.get_ref())));
                if let Some(t) = pg_target(&mut c, conn, &raw.policies, policy) {
                    connections.insert(name, Target::Postgres(t));
                }
            }
        }
    }

    // Roles.
    let roles = super::identity::roles(&mut c, &raw.roles, &issuers, &names);

    if !c.problems.is_empty() {
        return Err(ConfigError {
            problems: c.problems,
        });
    }
    let warnings = c.warnings;
    let approvers = operators
        .iter()
        .filter(|o| o.approver)
        .map(|o| o.name.clone())
        .collect();
    Ok(LoadedConfig {
        raw,
        data_dir,
        pg_listen,
        ssh_listen,
        admin_listen,
        operators,
        config_path: path.to_owned(),
        tls_files,
        issuers,
        api,
        limits,
        recorder,
        connections,
        roles,
        mask_key,
        approvers,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_urls() {
        assert!(check_issuer_url("https://idp.example.com").is_ok());
        assert!(check_issuer_url("http://127.0.0.1:8080").is_ok());
        assert!(check_issuer_url("http://[::1]:8080/realm").is_ok());
        assert!(check_issuer_url("http://localhost:1").is_ok());
        assert!(check_issuer_url("http://idp.example.com").is_err());
        assert!(check_issuer_url("http://127.0.0.1.evil.com").is_err());
        assert!(check_issuer_url("ftp://x").is_err());
    }
}
