//! A throwaway PostgreSQL cluster per test.
//!
//! Each [`PgCluster`] owns a fresh data directory under `/tmp`, a free
//! loopback port and a unix socket directory, so tests can run in parallel
//! without sharing state. The harness runs as root, and PostgreSQL refuses
//! to run as root, so every server-side binary runs through
//! `runuser -u postgres`. Dropping the cluster stops it (`-m immediate`, as
//! nothing in it is worth a clean shutdown) and deletes the directory.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow};
use tempfile::TempDir;

use crate::clients::{PgTarget, SslMode};
use crate::ports::free_loopback_port;
use crate::process::{DEFAULT_TIMEOUT, log_tail, run_checked};

/// Where Debian-style packages install the server binaries; one directory
/// per major version.
const PG_LIB_ROOT: &str = "/usr/lib/postgresql";

/// The role the gateway uses to reach the cluster. A superuser, so tests can
/// inspect `pg_stat_activity` and create whatever they need.
pub const GATEHOUSE_ROLE: &str = "gatehouse";

/// The database created for tests, owned by [`GATEHOUSE_ROLE`].
pub const APP_DATABASE: &str = "app";

/// How many times to retry a start that lost its port to another process.
const START_ATTEMPTS: usize = 3;

/// The `pg_hba.conf` method for TCP connections from 127.0.0.1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostAuth {
    /// PostgreSQL's default since 14, and what the gateway must speak first.
    #[default]
    ScramSha256,
    /// Legacy MD5 challenge; the role password is stored as an MD5 hash.
    Md5,
    /// Cleartext password over the wire.
    Password,
    /// No authentication at all.
    Trust,
}

impl HostAuth {
    fn hba_method(self) -> &'static str {
        match self {
            HostAuth::ScramSha256 => "scram-sha-256",
            HostAuth::Md5 => "md5",
            HostAuth::Password => "password",
            HostAuth::Trust => "trust",
        }
    }
}

/// Options for [`PgCluster::start_with`].
#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// Serve TLS with a fresh self-signed certificate for `localhost` and
    /// `127.0.0.1`.
    pub ssl: bool,
    /// Authentication method for TCP connections.
    pub host_auth: HostAuth,
}

impl PgOptions {
    /// Enables or disables server-side TLS.
    pub fn ssl(mut self, on: bool) -> Self {
        self.ssl = on;
        self
    }

    /// Sets the `pg_hba.conf` method for TCP connections.
    pub fn host_auth(mut self, auth: HostAuth) -> Self {
        self.host_auth = auth;
        self
    }
}

/// A running PostgreSQL cluster in a temporary directory.
pub struct PgCluster {
    bin_dir: PathBuf,
    /// Kept for its `Drop`, which deletes the data directory.
    work: TempDir,
    port: u16,
    password: String,
    options: PgOptions,
    running: bool,
}

impl PgCluster {
    /// Starts a cluster with SCRAM authentication and no TLS.
    pub fn start() -> Result<Self> {
        Self::start_with(PgOptions::default())
    }

    /// Starts a cluster with the given options, creates the
    /// [`GATEHOUSE_ROLE`] superuser with a random password and the
    /// [`APP_DATABASE`] database it owns.
    pub fn start_with(options: PgOptions) -> Result<Self> {
        let bin_dir = pg_bin_dir()?;
        let work = tempfile::Builder::new()
            .prefix("gatehouse-pg-")
            .tempdir_in("/tmp")
            .context("creating the cluster directory")?;
        // The postgres user must be able to traverse into the directory.
        fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
            .context("making the cluster directory traversable")?;
        chown_postgres(work.path())?;

        let mut cluster = PgCluster {
            bin_dir,
            work,
            port: 0,
            password: random_hex(16)?,
            options,
            running: false,
        };
        cluster.initdb()?;
        cluster.write_hba()?;
        if cluster.options.ssl {
            cluster.write_server_cert()?;
        }
        chown_postgres(cluster.work.path())?;

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_loopback_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    last_error = None;
                    break;
                }
                Err(e) => {
                    let lost_port = log_tail(&cluster.log_path(), 20).contains("could not bind");
                    last_error = Some(e);
                    if !lost_port {
                        break;
                    }
                }
            }
        }
        if let Some(e) = last_error {
            return Err(e);
        }
        cluster.running = true;
        cluster.bootstrap_roles()?;
        Ok(cluster)
    }

    /// The loopback TCP port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the form the gateway's connection config wants.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The password of the [`GATEHOUSE_ROLE`] role.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory holding the unix socket (`.s.PGSQL.PORT`).
    pub fn socket_dir(&self) -> &Path {
        self.work.path()
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.work.path().join("data")
    }

    /// The server certificate when started with `ssl`, for clients that
    /// want to verify the target directly.
    pub fn server_cert_path(&self) -> Option<PathBuf> {
        self.options.ssl.then(|| self.data_dir().join("server.crt"))
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A client target for connecting to the cluster directly (bypassing
    /// the gateway) as [`GATEHOUSE_ROLE`], e.g. to compare results.
    pub fn target(&self, dbname: &str) -> PgTarget {
        PgTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            dbname: dbname.into(),
            user: GATEHOUSE_ROLE.into(),
            password: self.password.clone(),
            sslmode: if self.options.ssl {
                SslMode::Require
            } else {
                SslMode::Disable
            },
            sslrootcert: None,
            timeout: crate::clients::DEFAULT_CLIENT_TIMEOUT,
        }
    }

    /// Runs `sql` directly against the cluster over TCP as
    /// [`GATEHOUSE_ROLE`] and returns the trimmed unaligned, tuples-only
    /// output. Errors carry psql's stderr.
    pub fn psql_direct(&self, db: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new("psql");
        crate::clients::clear_pg_env(&mut cmd);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-U", GATEHOUSE_ROLE, "-d", db, "-c", sql])
        .env("PGPASSWORD", &self.password)
        .env("PGCONNECT_TIMEOUT", "10");
        let out = run_checked(&mut cmd, DEFAULT_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the cluster cleanly (`-m fast`). The directory stays until drop,
    /// so [`PgCluster::start_again`] can bring the same cluster back — for
    /// tests of how the gateway handles a target that goes away.
    pub fn stop(&mut self) -> Result<()> {
        if self.running {
            self.pg_ctl(&["-m", "fast", "stop"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Restarts a cluster stopped with [`PgCluster::stop`] on the same port.
    pub fn start_again(&mut self) -> Result<()> {
        if !self.running {
            self.pg_ctl_start()?;
            self.running = true;
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.work.path().join("server.log")
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Runs a server binary as the postgres user from inside the work
    /// directory (runuser keeps the caller's cwd, which may be unreadable).
    fn as_postgres(&self, program: &Path) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(program)
            .current_dir(self.work.path());
        cmd
    }

    fn initdb(&self) -> Result<()> {
        let mut cmd = self.as_postgres(&self.bin("initdb"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-U",
                "postgres",
            ])
            // A fixed locale keeps initdb independent of the host's LANG.
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"]);
        run_checked(&mut cmd, DEFAULT_TIMEOUT).context("initdb")?;
        Ok(())
    }

    fn write_hba(&self) -> Result<()> {
        let hba = format!(
            "# Written by gatehouse-tests: unix socket for setup, one TCP rule under test.\n\
             local all all trust\n\
             host all all 127.0.0.1/32 {}\n",
            self.options.host_auth.hba_method()
        );
        let path = self.data_dir().join("pg_hba.conf");
        fs::write(&path, hba).with_context(|| format!("writing {}", path.display()))
    }

    fn write_server_cert(&self) -> Result<()> {
        let data = self.data_dir();
        let key = data.join("server.key");
        let crt = data.join("server.crt");
        let mut cmd = Command::new("openssl");
        cmd.args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt);
        run_checked(&mut cmd, DEFAULT_TIMEOUT).context("generating the server certificate")?;
        // PostgreSQL refuses a key readable by anyone but its owner.
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
            .context("restricting the server key")?;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let mut cmd = self.as_postgres(&self.bin("pg_ctl"));
        cmd.args(["-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .args(args);
        run_checked(&mut cmd, DEFAULT_TIMEOUT)?;
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let mut server_opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.socket_dir().display()
        );
        if self.options.ssl {
            server_opts.push_str(" -c ssl=on");
        }
        let log = self.log_path();
        let log = log.to_str().ok_or_else(|| anyhow!("non-UTF-8 log path"))?;
        self.pg_ctl(&["-o", &server_opts, "-l", log, "start"])
            .map_err(|e| {
                anyhow!(
                    "starting PostgreSQL failed: {e:#}\n--- server log tail ---\n{}",
                    log_tail(&self.log_path(), 30)
                )
            })
    }

    /// Creates the gateway's role and database over the unix socket, where
    /// `local all all trust` lets the postgres superuser in without a
    /// password.
    fn bootstrap_roles(&self) -> Result<()> {
        let mut create_role = String::new();
        if self.options.host_auth == HostAuth::Md5 {
            // Store an MD5 hash so the md5 method can actually be used.
            create_role.push_str("SET password_encryption = 'md5'; ");
        }
        // The password is hex, so it needs no quoting beyond the literal.
        create_role.push_str(&format!(
            "CREATE ROLE {GATEHOUSE_ROLE} LOGIN SUPERUSER PASSWORD '{}';",
            self.password
        ));
        // Separate -c flags: CREATE DATABASE cannot share a transaction.
        let create_db = format!("CREATE DATABASE {APP_DATABASE} OWNER {GATEHOUSE_ROLE};");
        // The server's own psql matches its version; fall back to PATH.
        let psql = if self.bin("psql").exists() {
            self.bin("psql")
        } else {
            PathBuf::from("psql")
        };
        let mut cmd = self.as_postgres(&psql);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                &create_role,
                "-c",
                &create_db,
            ]);
        crate::clients::clear_pg_env(&mut cmd);
        run_checked(&mut cmd, DEFAULT_TIMEOUT)
            .context("creating the gatehouse role and app database")?;
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            // Nothing to report to in drop; the directory goes away anyway.
            let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        }
    }
}

/// The newest `/usr/lib/postgresql/<major>/bin` that has `initdb`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    let entries = fs::read_dir(PG_LIB_ROOT).with_context(|| format!("listing {PG_LIB_ROOT}"))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {PG_LIB_ROOT}"))?;
        let Some(major) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let bin = entry.path().join("bin");
        if bin.join("initdb").exists() && best.as_ref().is_none_or(|(m, _)| major > *m) {
            best = Some((major, bin));
        }
    }
    best.map(|(_, bin)| bin)
        .ok_or_else(|| anyhow!("no PostgreSQL server binaries under {PG_LIB_ROOT}/*/bin"))
}

fn chown_postgres(path: &Path) -> Result<()> {
    let mut cmd = Command::new("chown");
    cmd.args(["-R", "postgres:postgres"]).arg(path);
    run_checked(&mut cmd, DEFAULT_TIMEOUT)?;
    Ok(())
}

/// `bytes` random bytes from the kernel, hex-encoded.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
