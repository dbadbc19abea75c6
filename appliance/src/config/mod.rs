//! The configuration file: its shape (this module), loading and validation
//! (`load`; issuers and roles in `identity`, SQL policies in `policy`), and
//! durations (`duration`).
//!
//! The shape follows the contract in DESIGN.md; every table rejects unknown
//! keys. Names that other entries refer to carry their position in the file
//! (`Spanned`) so a validation error can name the line.

mod duration;
mod identity;
pub mod load;
mod policy;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

pub use duration::parse_duration;
pub use load::{ApiSettings, LoadedConfig, OperatorKey, load, load_text};
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
    /// `[[auth.oidc]]`, one per issuer; a single `[auth.oidc]` table loads
    /// as a list of one.
    #[serde(deserialize_with = "one_or_many")]
    pub oidc: Vec<Oidc>,
    #[serde(default)]
    pub ssh: AuthSsh,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    /// The issuer's name in identities (`NAME:sub`) and roles; required
    /// when several issuers are configured, `oidc` for a single one.
    pub name: Option<Spanned<String>>,
    pub issuer: Spanned<String>,
    pub audience: String,
    /// Claim holding the groups; a dotted path reaches nested claims
    /// (`realm_access.roles`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    #[serde(default = "default_algorithms")]
    pub algorithms: Spanned<Vec<String>>,
    /// A private CA (PEM) for discovery and JWKS over HTTPS; when set, the
    /// system's roots are not trusted for this issuer.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// A static JWKS instead of discovery (air-gapped); SIGHUP rereads it.
    pub jwks_file: Option<Spanned<PathBuf>>,
}

/// `[auth.ssh]`: SSH user certificates issued for tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSsh {
    /// Longest validity of a certificate from `POST /v1/ssh/certificate`
    /// (default 1h); never past the token's own expiry.
    pub max_certificate_lifetime: Option<Spanned<String>>,
}

/// A table or a list of tables, as a list, with the inner type's own
/// errors (unknown keys, lines) intact.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
    struct OneOrMany<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a table or an array of tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map)).map(|one| vec![one])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
            Vec::<T>::deserialize(SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(OneOrMany(std::marker::PhantomData))
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

/// One `[[roles]]` entry: every criterion given (issuer, groups, claims)
/// must hold; at least one must be given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: Spanned<String>,
    /// An `[[auth.oidc]]` name.
    pub issuer: Option<Spanned<String>>,
    /// Token groups that grant the role (any one).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Claim path → pattern (`*` globs), or a list of patterns (any one).
    pub claims: Option<Spanned<toml::Table>>,
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
    /// Settings a client may give at startup (`options` / PGOPTIONS, or as
    /// startup parameters); default `pg::options::DEFAULT_ALLOWED`.
    pub startup_options: Option<Spanned<Vec<String>>>,
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
    /// SSH: allow `direct-tcpip` and `tcpip-forward` (default false).
    pub port_forwarding: Option<bool>,
    /// SSH: environment variable names (globs) an agent may set; default
    /// `["LANG", "LC_*", "TERM"]`.
    pub env: Option<Vec<String>>,
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
    /// `allow`, `block` or `approve` (`read_only` for path rules).
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
    /// SSH: command lines (globs) of exec requests and interactive lines.
    pub commands: Option<Vec<String>>,
    /// SSH: SFTP and scp paths (globs); actions `allow`, `block`,
    /// `read_only`.
    pub paths: Option<Vec<String>>,
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
