//! Stock PostgreSQL clients (`psql`, `pgbench`, and Python's psycopg with
//! the libpq its binary wheel bundles) pointed at a target.
//!
//! End-to-end tests drive the gateway with the same programs users run, so
//! a protocol detail the gateway gets wrong shows up as the error a user
//! would see. Connection settings travel in `PG*` environment variables
//! rather than a conninfo string, which keeps passwords (tokens) out of the
//! process list and works identically for both programs.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::process::run;

/// Deadline for one client invocation. Long enough for a pgbench run, short
/// enough that a gateway that stops answering fails the test instead of
/// hanging it.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// `libpq`'s `PGCONNECT_TIMEOUT`, in seconds.
const CONNECT_TIMEOUT_SECS: &str = "10";

/// libpq `sslmode` values the tests use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it.
    Prefer,
    /// TLS without certificate verification.
    Require,
    /// TLS, certificate chains to `sslrootcert`, any host name.
    VerifyCa,
    /// TLS, certificate chains to `sslrootcert` and names the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where and as whom a client connects. Fields are public so a test can
/// tweak one thing (a wrong password, another database) from a base target.
#[derive(Clone, Debug)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    /// Sent as `PGPASSWORD`; for the gateway this is the OIDC token.
    pub password: String,
    pub sslmode: SslMode,
    /// The CA to verify the server against, for the `verify-*` modes.
    pub sslrootcert: Option<PathBuf>,
    /// Deadline for each client run.
    pub timeout: Duration,
}

impl PgTarget {
    /// A libpq conninfo string for display or for clients that need one.
    /// It leaves the password out on purpose.
    pub fn conninfo(&self) -> String {
        let mut parts = vec![
            format!("host={}", conninfo_value(&self.host)),
            format!("port={}", self.port),
            format!("dbname={}", conninfo_value(&self.dbname)),
            format!("user={}", conninfo_value(&self.user)),
            format!("sslmode={}", self.sslmode.as_str()),
        ];
        if let Some(ca) = &self.sslrootcert {
            parts.push(format!(
                "sslrootcert={}",
                conninfo_value(&ca.to_string_lossy())
            ));
        }
        parts.join(" ")
    }

    /// Runs one statement (or a `;`-separated script) with unaligned,
    /// tuples-only, quiet output, so stdout is just the rows, `|`-separated.
    pub fn psql(&self, sql: &str) -> Result<Output> {
        self.psql_args(&["-A", "-t", "-q", "-c", sql])
    }

    /// Runs psql with the given arguments. `-X` (no psqlrc), `-w` (never
    /// prompt) and `ON_ERROR_STOP=1` are always added, so a failed
    /// statement shows up as a non-zero exit.
    pub fn psql_args(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-w", "-v", "ON_ERROR_STOP=1"]).args(args);
        self.apply_env(&mut cmd);
        run(&mut cmd, self.timeout)
    }

    /// Runs pgbench with the given arguments against this target.
    pub fn pgbench(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("pgbench");
        cmd.args(args);
        self.apply_env(&mut cmd);
        run(&mut cmd, self.timeout)
    }

    /// Runs a Python `script` with psycopg `version` (one of the releases
    /// [`PSYCOPG_LIBPQ17`], [`PSYCOPG_LIBPQ18_0`] that
    /// `scripts/install-deps.sh` installs) importable, connected through
    /// the same `PG*` environment as psql: `psycopg.connect("")` reaches
    /// this target. `args` are the script's `sys.argv[1:]`.
    pub fn python(&self, version: &str, script: &str, args: &[&str]) -> Result<Output> {
        let libs = python_libs(version)?;
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script).args(args);
        self.apply_env(&mut cmd);
        cmd.env("PYTHONPATH", libs)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1");
        run(&mut cmd, self.timeout)
    }

    /// Sets the connection environment on `cmd`, after clearing any `PG*`
    /// settings inherited from the developer's shell.
    pub fn apply_env(&self, cmd: &mut Command) {
        clear_pg_env(cmd);
        cmd.env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGDATABASE", &self.dbname)
            .env("PGUSER", &self.user)
            .env("PGPASSWORD", &self.password)
            .env("PGSSLMODE", self.sslmode.as_str())
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS);
        if let Some(ca) = &self.sslrootcert {
            cmd.env("PGSSLROOTCERT", ca);
        }
    }
}

/// psycopg 3.2.13, whose binary wheel bundles libpq 17.6: the libpq that
/// sends CancelRequest through TLS.
pub const PSYCOPG_LIBPQ17: &str = "3.2.13";

/// psycopg 3.3.4, whose binary wheel bundles libpq 18.0.
pub const PSYCOPG_LIBPQ18_0: &str = "3.3.4";

/// Where `scripts/install-deps.sh` puts each psycopg release (one
/// directory per version, for `PYTHONPATH`); `GATEHOUSE_PYTHON_LIBS`
/// overrides the root.
pub const PYTHON_LIBS_ROOT: &str = "/opt/gatehouse-tests/python";

/// The `PYTHONPATH` entry for psycopg `version`.
pub fn python_libs(version: &str) -> Result<PathBuf> {
    let root = std::env::var_os("GATEHOUSE_PYTHON_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PYTHON_LIBS_ROOT));
    let dir = root.join(format!("psycopg-{version}"));
    if !dir.join("psycopg").is_dir() {
        bail!(
            "psycopg {version} is not installed in {}; run scripts/install-deps.sh",
            dir.display()
        );
    }
    Ok(dir)
}

/// Removes libpq settings a developer's environment might carry, so a test
/// connects exactly where it says. `PGCONNECT_TIMEOUT` is set again by the
/// callers that want it.
pub fn clear_pg_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGSSLNEGOTIATION",
        "PGGSSENCMODE",
        "PGREQUIREAUTH",
        "PGCHANNELBINDING",
        "PGTARGETSESSIONATTRS",
        "PGAPPNAME",
    ] {
        cmd.env_remove(var);
    }
}

/// Convenience accessors for a client's [`Output`].
pub trait OutputExt {
    /// Stdout, lossily decoded and trimmed.
    fn stdout_text(&self) -> String;
    /// Stderr, lossily decoded and trimmed.
    fn stderr_text(&self) -> String;
    /// Stdout if the program exited 0, else an error with its stderr.
    fn success_text(&self) -> Result<String>;
}

impl OutputExt for Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    fn success_text(&self) -> Result<String> {
        if !self.status.success() {
            bail!("client failed ({}): {}", self.status, self.stderr_text());
        }
        Ok(self.stdout_text())
    }
}

/// Quotes a conninfo value: single quotes, with `\` and `'` escaped.
fn conninfo_value(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}
