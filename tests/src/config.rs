//! The gateway's TOML config, built from test-sized pieces.
//!
//! The names emitted here are the config contract between the harness and
//! the appliance; a rename on either side should break these tests loudly.
//! [`ConfigBuilder::render`] is pure (paths and port in, text out) so the
//! contract itself is unit-tested without starting anything.
//!
//! ```toml
//! [appliance]
//! name = "test"
//! data_dir = "/abs/path/data"
//!
//! [listen]
//! postgres = "127.0.0.1:PORT"
//!
//! [auth.oidc]
//! issuer = "http://127.0.0.1:IPORT"
//! audience = "gatehouse"
//! groups_claim = "groups"
//! algorithms = ["RS256", "ES256"]
//!
//! [[roles]]
//! name = "deployers"
//! groups = ["ci-deploy"]
//! connections = ["app-db"]
//!
//! [[connections]]
//! name = "app-db"
//! kind = "postgres"
//! address = "127.0.0.1:PGPORT"
//! database = "app"
//! user = "gatehouse"
//! password_file = "secrets/app-db.password"
//! tls = "disable"
//! policy = "default"
//!
//! [policies.default]
//! recording = "batched"
//! ```

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::issuer::Issuer;
use crate::pg::{APP_DATABASE, GATEHOUSE_ROLE, PgCluster};
use crate::ports::free_loopback_port;

/// File name of the config inside the gateway's work directory.
pub const CONFIG_FILE: &str = "gatehouse.toml";

/// Directory (relative to the config file) holding target passwords.
pub const SECRETS_DIR: &str = "secrets";

/// The name of the canonical connection in [`ConfigBuilder::standard`].
pub const APP_CONNECTION: &str = "app-db";

/// The canonical role and the group that grants it.
pub const DEPLOYERS_ROLE: &str = "deployers";
pub const DEPLOYERS_GROUP: &str = "ci-deploy";

/// Sections [`ConfigBuilder::line_in`] can add lines to; any other name
/// becomes a table of its own.
const BUILTIN_SECTIONS: [&str; 4] = ["appliance", "listen", "limits", "auth.oidc"];

/// One `[[connections]]` entry.
#[derive(Clone, Debug)]
pub struct ConnectionSpec {
    pub name: String,
    pub kind: String,
    pub address: String,
    pub database: String,
    pub user: String,
    /// Written to `secrets/<name>.password` and referenced as
    /// `password_file`; `None` leaves `password_file` out.
    pub password: Option<String>,
    pub tls: String,
    pub policy: String,
    /// Raw `key = value` lines appended inside the entry.
    pub extra: Vec<String>,
}

impl ConnectionSpec {
    /// A PostgreSQL target without TLS under the `default` policy.
    pub fn postgres(name: &str, address: &str, database: &str, user: &str, password: &str) -> Self {
        ConnectionSpec {
            name: name.into(),
            kind: "postgres".into(),
            address: address.into(),
            database: database.into(),
            user: user.into(),
            password: Some(password.into()),
            tls: "disable".into(),
            policy: "default".into(),
            extra: Vec::new(),
        }
    }

    /// The `app` database of `pg` as the `gatehouse` role.
    pub fn for_cluster(name: &str, pg: &PgCluster) -> Self {
        Self::postgres(
            name,
            &pg.address(),
            APP_DATABASE,
            GATEHOUSE_ROLE,
            pg.password(),
        )
    }

    /// A target on a loopback port nothing listens on (it was free a moment
    /// ago), for "target unreachable" tests.
    pub fn dead(name: &str) -> Result<Self> {
        let address = format!("127.0.0.1:{}", free_loopback_port()?);
        Ok(Self::postgres(
            name,
            &address,
            APP_DATABASE,
            GATEHOUSE_ROLE,
            "unused",
        ))
    }

    /// An SSH target: `address` (`host:port`), logged in to as `user` with
    /// the private key at `key_file`, whose host key `host_key` is pinned.
    pub fn ssh(name: &str, address: &str, user: &str, key_file: &Path, host_key: &str) -> Self {
        ConnectionSpec {
            name: name.into(),
            kind: "ssh".into(),
            address: address.into(),
            database: String::new(),
            user: user.into(),
            password: None,
            tls: String::new(),
            policy: "default".into(),
            extra: vec![
                format!("private_key_file = {}", quote(&key_file.to_string_lossy())),
                format!("host_key = {}", quote(host_key)),
            ],
        }
    }

    /// Sets the gateway-to-target TLS mode (`disable`, `require`, ...).
    pub fn tls(mut self, mode: &str) -> Self {
        self.tls = mode.into();
        self
    }

    /// Sets the policy name.
    pub fn policy(mut self, policy: &str) -> Self {
        self.policy = policy.into();
        self
    }

    /// Appends a raw `key = value` line to the entry.
    pub fn line(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }
}

/// One more `[[auth.oidc]]` entry besides the builder's own issuer.
#[derive(Clone, Debug)]
pub struct IssuerSpec {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<String>,
    /// Raw `key = value` lines (`groups_claim`, `ca_file`, `jwks_file`).
    pub extra: Vec<String>,
}

impl IssuerSpec {
    /// An issuer named `name` at `issuer` with the harness audience and
    /// RS256/ES256.
    pub fn new(name: &str, issuer: &str) -> Self {
        IssuerSpec {
            name: name.into(),
            issuer: issuer.into(),
            audience: crate::token::DEFAULT_AUDIENCE.into(),
            algorithms: vec!["RS256".into(), "ES256".into()],
            extra: Vec::new(),
        }
    }

    /// Sets `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = audience.into();
        self
    }

    /// Appends a raw `key = value` line to the entry.
    pub fn line(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }
}

/// One `[[roles]]` entry: members of any of `groups` may use `connections`.
#[derive(Clone, Debug)]
pub struct RoleSpec {
    pub name: String,
    pub groups: Vec<String>,
    pub connections: Vec<String>,
    pub extra: Vec<String>,
}

impl RoleSpec {
    /// A role granting `connections` to members of `groups`.
    pub fn new(name: &str, groups: &[&str], connections: &[&str]) -> Self {
        RoleSpec {
            name: name.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            connections: connections.iter().map(|s| s.to_string()).collect(),
            extra: Vec::new(),
        }
    }

    /// Appends a raw `key = value` line to the entry.
    pub fn line(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }
}

/// One `[policies.<name>]` table, as raw lines after `recording`.
#[derive(Clone, Debug)]
pub struct PolicySpec {
    pub name: String,
    pub recording: Option<String>,
    pub extra: Vec<String>,
}

impl PolicySpec {
    /// An empty policy table.
    pub fn new(name: &str) -> Self {
        PolicySpec {
            name: name.into(),
            recording: None,
            extra: Vec::new(),
        }
    }

    /// Sets `recording` (`batched`, `off`, ...).
    pub fn recording(mut self, mode: &str) -> Self {
        self.recording = Some(mode.into());
        self
    }

    /// Appends a raw `key = value` line to the table.
    pub fn line(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }
}

/// Builds the gateway config. See the module docs for the output shape.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    name: String,
    issuer_name: Option<String>,
    issuer: String,
    audience: String,
    groups_claim: String,
    algorithms: Vec<String>,
    more_issuers: Vec<IssuerSpec>,
    postgres_plaintext: bool,
    max_sessions: Option<u64>,
    startup_timeout: Option<String>,
    max_message_bytes: Option<u64>,
    roles: Vec<RoleSpec>,
    connections: Vec<ConnectionSpec>,
    policies: Vec<PolicySpec>,
    section_lines: Vec<(String, String)>,
    raw: Vec<String>,
}

impl ConfigBuilder {
    /// A config trusting `issuer_url`, with no roles or connections and a
    /// `default` policy recording `batched`.
    pub fn new(issuer_url: &str) -> Self {
        ConfigBuilder {
            name: "test".into(),
            issuer_name: None,
            issuer: issuer_url.into(),
            audience: crate::token::DEFAULT_AUDIENCE.into(),
            groups_claim: crate::token::GROUPS_CLAIM.into(),
            algorithms: vec!["RS256".into(), "ES256".into()],
            more_issuers: Vec::new(),
            postgres_plaintext: false,
            max_sessions: None,
            startup_timeout: None,
            max_message_bytes: None,
            roles: Vec::new(),
            connections: Vec::new(),
            policies: vec![PolicySpec::new("default").recording("batched")],
            section_lines: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// The canonical setup: connection `app-db` to `pg`'s `app` database,
    /// and role `deployers` granting it to group `ci-deploy`.
    pub fn standard(issuer: &Issuer, pg: &PgCluster) -> Self {
        Self::new(issuer.url())
            .connection(ConnectionSpec::for_cluster(APP_CONNECTION, pg))
            .role(RoleSpec::new(
                DEPLOYERS_ROLE,
                &[DEPLOYERS_GROUP],
                &[APP_CONNECTION],
            ))
    }

    /// Sets `[appliance] name`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// Names the builder's own issuer (`[auth.oidc] name`); without a name
    /// it is the gateway's default, `oidc`.
    pub fn issuer_name(mut self, name: &str) -> Self {
        self.issuer_name = Some(name.into());
        self
    }

    /// Adds another issuer: every issuer is then rendered as
    /// `[[auth.oidc]]`, the builder's own first (named `oidc` unless
    /// [`ConfigBuilder::issuer_name`] says otherwise).
    pub fn issuer(mut self, issuer: IssuerSpec) -> Self {
        self.more_issuers.push(issuer);
        self
    }

    /// Sets `[auth.oidc] audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = audience.into();
        self
    }

    /// Sets `[auth.oidc] groups_claim`.
    pub fn groups_claim(mut self, claim: &str) -> Self {
        self.groups_claim = claim.into();
        self
    }

    /// Sets `[auth.oidc] algorithms`.
    pub fn algorithms(mut self, algorithms: &[&str]) -> Self {
        self.algorithms = algorithms.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets `[listen] postgres_plaintext` (accept clients without TLS).
    pub fn postgres_plaintext(mut self, on: bool) -> Self {
        self.postgres_plaintext = on;
        self
    }

    /// Sets `[limits] max_sessions`.
    pub fn max_sessions(mut self, n: u64) -> Self {
        self.max_sessions = Some(n);
        self
    }

    /// Sets `[limits] startup_timeout`, e.g. `"2s"`.
    pub fn startup_timeout(mut self, timeout: &str) -> Self {
        self.startup_timeout = Some(timeout.into());
        self
    }

    /// Sets `[limits] max_message_bytes`.
    pub fn max_message_bytes(mut self, n: u64) -> Self {
        self.max_message_bytes = Some(n);
        self
    }

    /// Adds a `[[roles]]` entry.
    pub fn role(mut self, role: RoleSpec) -> Self {
        self.roles.push(role);
        self
    }

    /// Adds a `[[connections]]` entry.
    pub fn connection(mut self, connection: ConnectionSpec) -> Self {
        self.connections.push(connection);
        self
    }

    /// Adds a `[policies.<name>]` table, replacing one of the same name.
    pub fn policy(mut self, policy: PolicySpec) -> Self {
        self.policies.retain(|p| p.name != policy.name);
        self.policies.push(policy);
        self
    }

    /// Appends a raw `key = value` line inside `section` (`appliance`,
    /// `listen`, `limits`, `auth.oidc`); other names get a table of their
    /// own, emitted before the raw text.
    pub fn line_in(mut self, section: &str, line: &str) -> Self {
        self.section_lines.push((section.into(), line.into()));
        self
    }

    /// Appends raw TOML at the very end; start it with a table header.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.into());
        self
    }

    /// The config text for a gateway working in `workdir` and listening on
    /// `127.0.0.1:listen_port`.
    pub fn render(&self, workdir: &Path, listen_port: u16) -> String {
        let mut out = String::new();
        let data_dir = workdir.join("data");

        out.push_str("[appliance]\n");
        kv(&mut out, "name", &quote(&self.name));
        kv(&mut out, "data_dir", &quote(&data_dir.to_string_lossy()));
        self.push_section_lines(&mut out, "appliance");

        out.push_str("\n[listen]\n");
        kv(
            &mut out,
            "postgres",
            &quote(&format!("127.0.0.1:{listen_port}")),
        );
        if self.postgres_plaintext {
            kv(&mut out, "postgres_plaintext", "true");
        }
        self.push_section_lines(&mut out, "listen");

        let has_limits = self.max_sessions.is_some()
            || self.startup_timeout.is_some()
            || self.max_message_bytes.is_some()
            || self.section_lines.iter().any(|(s, _)| s == "limits");
        if has_limits {
            out.push_str("\n[limits]\n");
            if let Some(n) = self.max_sessions {
                kv(&mut out, "max_sessions", &n.to_string());
            }
            if let Some(t) = &self.startup_timeout {
                kv(&mut out, "startup_timeout", &quote(t));
            }
            if let Some(n) = self.max_message_bytes {
                kv(&mut out, "max_message_bytes", &n.to_string());
            }
            self.push_section_lines(&mut out, "limits");
        }

        if self.more_issuers.is_empty() {
            out.push_str("\n[auth.oidc]\n");
        } else {
            out.push_str("\n[[auth.oidc]]\n");
        }
        let own_name = match (&self.issuer_name, self.more_issuers.is_empty()) {
            (Some(name), _) => Some(name.as_str()),
            (None, false) => Some("oidc"),
            (None, true) => None,
        };
        if let Some(name) = own_name {
            kv(&mut out, "name", &quote(name));
        }
        kv(&mut out, "issuer", &quote(&self.issuer));
        kv(&mut out, "audience", &quote(&self.audience));
        kv(&mut out, "groups_claim", &quote(&self.groups_claim));
        kv(&mut out, "algorithms", &quote_list(&self.algorithms));
        self.push_section_lines(&mut out, "auth.oidc");
        for issuer in &self.more_issuers {
            out.push_str("\n[[auth.oidc]]\n");
            kv(&mut out, "name", &quote(&issuer.name));
            kv(&mut out, "issuer", &quote(&issuer.issuer));
            kv(&mut out, "audience", &quote(&issuer.audience));
            kv(&mut out, "algorithms", &quote_list(&issuer.algorithms));
            push_lines(&mut out, &issuer.extra);
        }

        for role in &self.roles {
            out.push_str("\n[[roles]]\n");
            kv(&mut out, "name", &quote(&role.name));
            kv(&mut out, "groups", &quote_list(&role.groups));
            kv(&mut out, "connections", &quote_list(&role.connections));
            push_lines(&mut out, &role.extra);
        }

        for conn in &self.connections {
            out.push_str("\n[[connections]]\n");
            kv(&mut out, "name", &quote(&conn.name));
            kv(&mut out, "kind", &quote(&conn.kind));
            kv(&mut out, "address", &quote(&conn.address));
            if !conn.database.is_empty() {
                kv(&mut out, "database", &quote(&conn.database));
            }
            kv(&mut out, "user", &quote(&conn.user));
            if conn.password.is_some() {
                kv(
                    &mut out,
                    "password_file",
                    &quote(&password_file(&conn.name)),
                );
            }
            if !conn.tls.is_empty() {
                kv(&mut out, "tls", &quote(&conn.tls));
            }
            kv(&mut out, "policy", &quote(&conn.policy));
            push_lines(&mut out, &conn.extra);
        }

        for policy in &self.policies {
            let _ = writeln!(out, "\n[policies.{}]", key(&policy.name));
            if let Some(mode) = &policy.recording {
                kv(&mut out, "recording", &quote(mode));
            }
            push_lines(&mut out, &policy.extra);
        }

        let mut other_sections: Vec<&str> = Vec::new();
        for (section, _) in &self.section_lines {
            if !BUILTIN_SECTIONS.contains(&section.as_str())
                && !other_sections.contains(&section.as_str())
            {
                other_sections.push(section);
            }
        }
        for section in other_sections {
            let _ = writeln!(out, "\n[{section}]");
            self.push_section_lines(&mut out, section);
        }

        for raw in &self.raw {
            out.push('\n');
            out.push_str(raw);
            if !raw.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Writes the config and the password files into `workdir`; returns the
    /// config path. Password files are mode 0600, as a careful operator
    /// would leave them (and as the gateway may insist).
    pub fn write(&self, workdir: &Path, listen_port: u16) -> Result<PathBuf> {
        let secrets = workdir.join(SECRETS_DIR);
        fs::create_dir_all(&secrets).with_context(|| format!("creating {}", secrets.display()))?;
        for conn in &self.connections {
            if let Some(password) = &conn.password {
                let path = workdir.join(password_file(&conn.name));
                fs::write(&path, password)
                    .with_context(|| format!("writing {}", path.display()))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("restricting {}", path.display()))?;
            }
        }
        let path = workdir.join(CONFIG_FILE);
        fs::write(&path, self.render(workdir, listen_port))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Whether clients may connect without TLS.
    pub fn is_postgres_plaintext(&self) -> bool {
        self.postgres_plaintext
    }

    fn push_section_lines(&self, out: &mut String, section: &str) {
        for (s, line) in &self.section_lines {
            if s == section {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// `secrets/<name>.password`, relative to the config file.
pub fn password_file(connection: &str) -> String {
    format!("{SECRETS_DIR}/{connection}.password")
}

fn kv(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key} = {value}");
}

fn push_lines(out: &mut String, lines: &[String]) {
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A table key: bare if it can be, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { name.to_string() } else { quote(name) }
}
