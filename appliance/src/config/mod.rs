//! The configuration file: its shape (this module), loading and validation
//! (`load`), and durations (`duration`).
//!
//! The shape follows the contract in DESIGN.md; every table rejects unknown
//! keys. Names that other entries refer to carry their position in the file
//! (`Spanned`) so a validation error can name the line.

mod duration;
pub mod load;
mod policy;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

pub use duration::parse_duration;
pub use load::{LoadedConfig, OperatorKey, load};
pub use policy::save_mask_key;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub appliance: Appliance,
    pub listen: Listen,
    pub tls: Option<Tls>,
    pub auth: Auth,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub recordings: Recordings,
    #[serde(default)]
    pub operators: Vec<Operator>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub connections: Vec<Connection>,
    #[serde(default)]
    pub policies: BTreeMap<String, Spanned<Policy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appliance {
    pub name: String,
    pub data_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub postgres: Option<Spanned<String>>,
    /// Accept PostgreSQL startups without TLS. Only for loopback demos: the
    /// agent's token would cross the network in clear.
    #[serde(default)]
    pub postgres_plaintext: bool,
    pub ssh: Option<Spanned<String>>,
    pub admin_ssh: Option<Spanned<String>>,
    pub api: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub oidc: Oidc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    pub issuer: Spanned<String>,
    pub audience: String,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    #[serde(default = "default_algorithms")]
    pub algorithms: Spanned<Vec<String>>,
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_algorithms() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["RS256".into(), "ES256".into(), "EdDSA".into()])
}

/// Bounds; every field has a default chosen in `gatehouse_actors::gateway::Limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_sessions: Option<usize>,
    /// Threads running session actors; default one per core.
    pub workers: Option<usize>,
    pub startup_timeout: Option<Spanned<String>>,
    pub max_message_bytes: Option<usize>,
    /// Caps for single frontend message types (`query`, `bind`,
    /// `copy_data`, ...), overriding `max_message_bytes`.
    #[serde(default)]
    pub message_bytes: BTreeMap<String, Spanned<usize>>,
    pub rows_per_statement: Option<u64>,
    /// Largest message accepted from a target (bytes).
    pub max_target_message_bytes: Option<usize>,
    pub shutdown_grace: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recordings {
    /// How long an event may wait before it is durable (batched mode).
    pub flush_interval: Option<Spanned<String>>,
    /// Sealed recordings are removed this many days after they ended.
    pub keep_days: Option<u64>,
    /// Oldest sealed recordings are removed while the store holds more.
    pub max_bytes: Option<u64>,
}

/// An operator of the admin SSH endpoint: logs in with this key, as this
/// name; `approver` may decide held statements.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub name: Spanned<String>,
    pub public_key: Spanned<String>,
    #[serde(default)]
    pub approver: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: Spanned<String>,
    pub groups: Vec<String>,
    pub connections: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Postgres,
    Ssh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    Require,
    VerifyFull,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub name: Spanned<String>,
    pub kind: Kind,
    pub address: Spanned<String>,
    // PostgreSQL
    pub database: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub tls: Option<TlsMode>,
    pub ca_file: Option<Spanned<PathBuf>>,
    // SSH
    pub private_key_file: Option<Spanned<PathBuf>>,
    pub host_key: Option<String>,
    pub policy: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingMode {
    Strict,
    Batched,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "default_recording")]
    pub recording: Spanned<RecordingMode>,
    /// SSH only; parsed so configs written for the full product load.
    #[allow(dead_code)]
    pub port_forwarding: Option<bool>,
    /// What happens to a statement no rule matches: `allow` (default) or
    /// `block`.
    pub default: Option<Spanned<String>>,
    /// SQL the parser cannot read under a policy that blocks or holds
    /// anything: `block` (default) or `allow`.
    pub unparsed: Option<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleConfig>>,
    #[serde(default)]
    pub masks: Vec<Spanned<MaskConfig>>,
}

/// One `[[policies.NAME.rules]]`: every criterion given must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: Option<String>,
    /// `allow`, `block` or `approve`.
    pub action: Spanned<String>,
    /// Statement kinds (`select`, `delete`, `drop`, ...).
    #[serde(default)]
    pub statements: Vec<String>,
    /// Table names, `schema.table`, `*` wildcards.
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub functions: Vec<String>,
    /// Only UPDATE/DELETE without a WHERE clause.
    #[serde(default)]
    pub without_where: bool,
    /// Shown to the client when the rule blocks.
    pub message: Option<String>,
    /// Approve: how long the statement waits (default 5m).
    pub timeout: Option<Spanned<String>>,
    /// Approve: operators who may decide (default: any approver).
    #[serde(default)]
    pub approvers: Vec<Spanned<String>>,
    /// SSH command rules; parsed so full-product configs load.
    pub commands: Option<Vec<String>>,
}

/// One `[[policies.NAME.masks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    pub name: Option<String>,
    /// `column`, `table.column` or `schema.table.column`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Built-in content detectors.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// Custom content patterns (Rust `regex` syntax).
    #[serde(default)]
    pub regex: Vec<String>,
    /// `redact` (default), `partial`, `hash` or `null`.
    pub strategy: Option<Spanned<String>>,
    /// `partial`: characters kept at the end (default 4).
    pub keep: Option<usize>,
}

fn default_recording() -> Spanned<RecordingMode> {
    Spanned::new(0..0, RecordingMode::Batched)
}
