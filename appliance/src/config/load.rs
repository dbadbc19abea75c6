//! Loading and validating the config file.
//!
//! All problems are collected, not just the first, and each names the file,
//! the line and what to do about it. Secrets are read here, once, and never
//! printed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_actors::gateway::{Limits, PgTarget, Role, Secret, TargetTls};
use gatehouse_actors::pg::codec::FrameLimits;
use gatehouse_actors::recorder::RecorderConfig;
use toml::Spanned;

use gatehouse_actors::policy::SqlPolicy;

use super::policy::{mask_key, sql_policy};
use super::{Config, Kind, RecordingMode, TlsMode, parse_duration};

/// Algorithms an operator may allow. Symmetric ones are absent on purpose:
/// an HMAC "key" made from a public key is the classic JWT forgery.
const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

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
    /// The admin SSH endpoint, when configured.
    pub admin_listen: Option<SocketAddr>,
    /// Who may log in there, with their parsed keys.
    pub operators: Vec<OperatorKey>,
    /// The file this was loaded from: commands run for operators read it too.
    pub config_path: PathBuf,
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub issuer: String,
    pub algorithms: Vec<String>,
    pub limits: Limits,
    pub recorder: RecorderConfig,
    pub pg_targets: HashMap<String, PgTarget>,
    pub roles: Vec<Role>,
    /// The key for the `hash` mask strategy, and whether it is new (serve
    /// writes it to `data_dir/mask-hash.key` before serving).
    pub mask_key: ([u8; 32], bool),
    /// Operators marked `approver`.
    pub approvers: Vec<String>,
    /// Things that are valid but worth saying (configured yet not served).
    pub warnings: Vec<String>,
}

/// An `[[operators]]` entry with its key parsed.
#[derive(Debug, Clone)]
pub struct OperatorKey {
    pub name: String,
    pub key: russh::keys::PublicKey,
    pub approver: bool,
}

pub(super) struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    base: PathBuf,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Checker<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

    pub(super) fn problem<T>(&mut self, at: &Spanned<T>, what: impl fmt::Display) {
        let line = self.line(at.span());
        self.problems
            .push(format!("{}:{}: {}", self.file.display(), line, what));
    }

    fn problem_at(&mut self, line: usize, what: impl fmt::Display) {
        self.problems
            .push(format!("{}:{}: {}", self.file.display(), line, what));
    }

    pub(super) fn warn<T>(&mut self, at: &Spanned<T>, what: impl fmt::Display) {
        let line = self.line(at.span());
        self.warnings
            .push(format!("{}:{}: {}", self.file.display(), line, what));
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn existing_file(&mut self, at: &Spanned<PathBuf>, what: &str) -> Option<PathBuf> {
        let path = self.resolve(at.get_ref());
        if path.is_file() {
            Some(path)
        } else {
            self.problem(
                at,
                format!(
                    "{what} {} does not exist (paths are relative to the config file)",
                    path.display()
                ),
            );
            None
        }
    }

    pub(super) fn duration(
        &mut self,
        at: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        match at {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.problem(s, format!("{key}: {e}"));
                    default
                }
            },
        }
    }
}

/// Read, parse and validate the config file at `path`.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let one = |p: String| ConfigError { problems: vec![p] };
    let text = std::fs::read_to_string(path)
        .map_err(|e| one(format!("{}: cannot read config: {e}", path.display())))?;
    let raw: Config = toml::from_str(&text).map_err(|e| {
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
        text: &text,
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
    } else {
        c.problem_at(1, "listen.postgres is missing: there is nothing to serve");
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
    for (key, value) in [("ssh", &raw.listen.ssh), ("api", &raw.listen.api)] {
        if let Some(v) = value {
            c.warn(
                v,
                format!("listen.{key} is configured but not served by this version of gatehouse"),
            );
        }
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

    // Identity provider.
    let issuer = raw
        .auth
        .oidc
        .issuer
        .get_ref()
        .trim_end_matches('/')
        .to_owned();
    if let Err(e) = check_issuer_url(&issuer) {
        c.problem(&raw.auth.oidc.issuer, e);
    }
    let algorithms = raw.auth.oidc.algorithms.get_ref().clone();
    for alg in &algorithms {
        if !ASYMMETRIC_ALGORITHMS.contains(&alg.as_str()) {
            c.problem(
                &raw.auth.oidc.algorithms,
                format!(
                    "auth.oidc.algorithms: {alg:?} is not allowed; choose from {}",
                    ASYMMETRIC_ALGORITHMS.join(", ")
                ),
            );
        }
    }
    if algorithms.is_empty() {
        c.problem(
            &raw.auth.oidc.algorithms,
            "auth.oidc.algorithms is empty: no token could verify",
        );
    }

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
    for (name, policy) in &raw.policies {
        if let Some(p) = sql_policy(&mut c, name, policy, &mask_key.0, &raw.operators) {
            sql_policies.insert(name.clone(), Arc::new(p));
        }
    }

    // Connections.
    let mut pg_targets = HashMap::new();
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
                match &conn.private_key_file {
                    Some(k) => {
                        c.existing_file(k, "private_key_file");
                    }
                    None => c.problem(
                        &conn.name,
                        format!("connection {name:?} needs `private_key_file`"),
                    ),
                }
                if conn
                    .host_key
                    .as_deref()
                    .is_none_or(|k| k.split_whitespace().count() < 2)
                {
                    c.problem(&conn.name, format!("connection {name:?} needs `host_key` (\"ssh-ed25519 AAAA...\"): target keys are pinned"));
                }
                c.warn(&conn.name, format!("connection {name:?} is an SSH connection, which this version does not serve"));
            }
            Kind::Postgres => {
                let policy = sql_policies
                    .get(conn.policy.get_ref())
                    .cloned()
                    .unwrap_or_else(|| Arc::new(SqlPolicy::allow_all(conn.policy.get_ref())));
                if let Some(t) = pg_target(&mut c, conn, &raw.policies, policy) {
                    pg_targets.insert(name, t);
                }
            }
        }
    }

    // Roles.
    let mut role_names = HashSet::new();
    let mut roles = Vec::new();
    for role in &raw.roles {
        if !role_names.insert(role.name.get_ref().clone()) {
            c.problem(
                &role.name,
                format!("role {:?} is defined twice", role.name.get_ref()),
            );
        }
        for conn in &role.connections {
            if !names.contains(conn.get_ref()) {
                c.problem(
                    conn,
                    format!(
                        "role {:?} grants connection {:?}, which is not defined",
                        role.name.get_ref(),
                        conn.get_ref()
                    ),
                );
            }
        }
        roles.push(Role {
            name: role.name.get_ref().clone(),
            groups: role.groups.clone(),
            connections: role
                .connections
                .iter()
                .map(|c| c.get_ref().clone())
                .collect(),
        });
    }

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
        admin_listen,
        operators,
        config_path: path.to_owned(),
        tls_files,
        issuer,
        algorithms,
        limits,
        recorder,
        pg_targets,
        roles,
        mask_key,
        approvers,
        warnings,
    })
}

fn pg_target(
    c: &mut Checker<'_>,
    conn: &super::Connection,
    policies: &std::collections::BTreeMap<String, Spanned<super::Policy>>,
    sql_policy: Arc<SqlPolicy>,
) -> Option<PgTarget> {
    let strict_recording = policies
        .get(conn.policy.get_ref())
        .is_some_and(|p| *p.get_ref().recording.get_ref() == RecordingMode::Strict);
    let name = conn.name.get_ref();
    let mut ok = true;
    let mut required = |v: &Option<String>, key: &str, c: &mut Checker<'_>| match v {
        Some(v) => v.clone(),
        None => {
            c.problem(&conn.name, format!("connection {name:?} needs `{key}`"));
            ok = false;
            String::new()
        }
    };
    let database = required(&conn.database, "database", c);
    let user = required(&conn.user, "user", c);
    if conn.address.get_ref().rsplit_once(':').is_none() {
        c.problem(&conn.address, "address must be host:port");
        ok = false;
    }
    let password = match &conn.password_file {
        None => None,
        Some(p) => match c.existing_file(p, "password_file") {
            None => {
                ok = false;
                None
            }
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']).to_owned())),
                Err(e) => {
                    c.problem(
                        p,
                        format!("password_file {} is unreadable: {e}", path.display()),
                    );
                    ok = false;
                    None
                }
            },
        },
    };
    let tls = match conn.tls.unwrap_or(TlsMode::VerifyFull) {
        TlsMode::Disable => TargetTls::Disable,
        TlsMode::Require => TargetTls::Require(Arc::new(crate::tls::no_verify_client_config())),
        TlsMode::VerifyFull => {
            let roots = match &conn.ca_file {
                Some(ca) => match c.existing_file(ca, "ca_file") {
                    Some(path) => match crate::tls::load_roots(&path) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            c.problem(ca, format!("ca_file: {e}"));
                            None
                        }
                    },
                    None => None,
                },
                None => Some(crate::tls::public_roots()),
            };
            match roots {
                Some(r) => TargetTls::VerifyFull(Arc::new(crate::tls::verifying_client_config(r))),
                None => {
                    ok = false;
                    TargetTls::Disable
                }
            }
        }
    };
    ok.then(|| PgTarget {
        name: name.clone(),
        address: conn.address.get_ref().clone(),
        database,
        user,
        password,
        tls,
        policy: conn.policy.get_ref().clone(),
        sql_policy,
        catalog: Default::default(),
        strict_recording,
    })
}

/// The issuer must be HTTPS, except on a loopback address (tests, demo).
pub fn check_issuer_url(issuer: &str) -> Result<(), String> {
    if issuer.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = issuer.strip_prefix("http://") else {
        return Err(format!(
            "auth.oidc.issuer {issuer:?} must be an https:// URL"
        ));
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "auth.oidc.issuer {issuer:?} must be https:// (plain http is only accepted on a loopback address)"
        ))
    }
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
