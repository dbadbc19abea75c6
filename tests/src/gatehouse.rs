//! The built `gatehouse` binary, run as a real daemon.
//!
//! End-to-end tests exercise the binary users run — its config parsing,
//! startup, signal handling — not a library entry point. Each [`Gatehouse`]
//! gets its own work directory holding the config, the password files, the
//! data directory and one log file that collects stdout and stderr across
//! restarts. The binary is not built by `cargo test -p gatehouse-tests`;
//! run `cargo build -p gatehouse` first (or set `GATEHOUSE_BIN`).

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::clients::{DEFAULT_CLIENT_TIMEOUT, PgTarget, SslMode};
use crate::config::ConfigBuilder;
use crate::ports::{free_loopback_port, wait_for_port};
use crate::process::{log_tail, run, wait_until};

/// Environment variable naming the binary explicitly.
pub const BIN_ENV: &str = "GATEHOUSE_BIN";

/// How long the daemon may take to accept connections. Generous because the
/// first start generates a CA and fetches the issuer's discovery document.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Deadline for one CLI invocation.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of log included in startup errors.
const LOG_TAIL_LINES: usize = 40;

/// How many times [`Gatehouse::start`] retries when another process took
/// the listen port between picking and binding it.
const START_ATTEMPTS: usize = 3;

/// A `gatehouse serve` daemon (or, before [`Gatehouse::serve`], just its
/// prepared work directory). Dropping it kills the daemon.
pub struct Gatehouse {
    bin: PathBuf,
    work: TempDir,
    config: ConfigBuilder,
    config_path: PathBuf,
    pg_port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Gatehouse {
    /// Writes the config and starts the daemon, returning once its
    /// PostgreSQL listener accepts connections.
    pub fn start(config: &ConfigBuilder) -> Result<Self> {
        let mut gh = Self::stage(config)?;
        let mut attempt = 1;
        loop {
            match gh.serve() {
                Ok(()) => return Ok(gh),
                Err(_) if attempt < START_ATTEMPTS && gh.lost_port_race() => {
                    attempt += 1;
                    gh.pg_port = free_loopback_port()?;
                    gh.config_path = gh.config.write(gh.work.path(), gh.pg_port)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Prepares the work directory and config without starting anything,
    /// for tests that run CLI commands first, set environment variables, or
    /// expect `serve` to fail.
    pub fn stage(config: &ConfigBuilder) -> Result<Self> {
        Self::stage_with_bin(config, &gatehouse_bin()?)
    }

    /// Like [`Gatehouse::stage`] with an explicit binary, e.g. an older
    /// release for upgrade tests, or a stand-in for testing the harness.
    pub fn stage_with_bin(config: &ConfigBuilder, bin: &Path) -> Result<Self> {
        let bin = bin.to_path_buf();
        let work = tempfile::Builder::new()
            .prefix("gatehouse-e2e-")
            .tempdir()
            .context("creating the gateway work directory")?;
        let pg_port = free_loopback_port()?;
        let config_path = config.write(work.path(), pg_port)?;
        Ok(Gatehouse {
            bin,
            work,
            config: config.clone(),
            config_path,
            pg_port,
            env: vec![("RUST_BACKTRACE".into(), "1".into())],
            child: None,
        })
    }

    /// Sets an environment variable for later daemon and CLI runs.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Starts the daemon (again, after an exit) and waits until its
    /// PostgreSQL port accepts connections. On failure the error carries the
    /// log tail.
    pub fn serve(&mut self) -> Result<()> {
        self.spawn()?;
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("daemon not spawned"))?;
        let ready = wait_for_port(self.pg_port, READY_TIMEOUT, || {
            Ok(child.try_wait()?.is_none())
        })?;
        if ready {
            return Ok(());
        }
        let exited = child.try_wait()?;
        let what = match exited {
            Some(status) => format!("gatehouse exited during startup ({status})"),
            None => {
                self.kill();
                format!(
                    "gatehouse did not accept connections on 127.0.0.1:{} within {READY_TIMEOUT:?}",
                    self.pg_port
                )
            }
        };
        bail!(
            "{what}\n--- log tail ({}) ---\n{}",
            self.log_path().display(),
            log_tail(&self.log_path(), LOG_TAIL_LINES)
        )
    }

    /// Starts `gatehouse serve --config PATH` without waiting for readiness.
    pub fn spawn(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("gatehouse is already running (pid {:?})", self.pid());
        }
        let log = self.open_log()?;
        let log_err = log.try_clone().context("duplicating the log handle")?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.work.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        self.apply_env(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Rewrites the config file (same work directory and port), e.g. before
    /// a reload signal or a restart.
    pub fn rewrite_config(&mut self, config: &ConfigBuilder) -> Result<()> {
        self.config = config.clone();
        self.config_path = self.config.write(self.work.path(), self.pg_port)?;
        Ok(())
    }

    /// The daemon's PostgreSQL listen port on 127.0.0.1.
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// `127.0.0.1:PORT`.
    pub fn pg_address(&self) -> String {
        format!("127.0.0.1:{}", self.pg_port)
    }

    /// The work directory (config, secrets, data, log).
    pub fn workdir(&self) -> &Path {
        self.work.path()
    }

    /// `[appliance] data_dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.work.path().join("data")
    }

    /// The CA the daemon generates to sign its listener certificate;
    /// clients verify against it.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.data_dir().join("tls").join("ca.crt")
    }

    /// The config file path.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config this daemon was started with.
    pub fn config(&self) -> &ConfigBuilder {
        &self.config
    }

    /// The daemon's log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.work.path().join("gatehouse.log")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The daemon's process id while it has one.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon is running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A client target for this gateway: TLS verified against the daemon's
    /// CA, unless the config allows plaintext, in which case TLS is off.
    /// `password` is the token.
    pub fn target(&self, dbname: &str, user: &str, password: &str) -> PgTarget {
        let (sslmode, sslrootcert) = if self.config.is_postgres_plaintext() {
            (SslMode::Disable, None)
        } else {
            (SslMode::VerifyFull, Some(self.ca_cert_path()))
        };
        PgTarget {
            host: "127.0.0.1".into(),
            port: self.pg_port,
            dbname: dbname.into(),
            user: user.into(),
            password: password.into(),
            sslmode,
            sslrootcert,
            timeout: DEFAULT_CLIENT_TIMEOUT,
        }
    }

    /// Runs `gatehouse <args> --config PATH` to completion (exit status is
    /// the caller's to check).
    pub fn run_cli(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.work.path());
        self.apply_env(&mut cmd);
        run(&mut cmd, CLI_TIMEOUT)
    }

    /// Sends a signal by name (`TERM`, `SIGHUP`, `INT`, ...) via `kill`.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("gatehouse is not running"))?;
        let name = sig.strip_prefix("SIG").unwrap_or(sig);
        let mut cmd = Command::new("kill");
        cmd.arg("-s").arg(name).arg(pid.to_string());
        crate::process::run_checked(&mut cmd, CLI_TIMEOUT)?;
        Ok(())
    }

    /// Waits up to `timeout` for the daemon to exit; `None` if it is still
    /// running (or was never started).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        wait_until(timeout, || {
            child.try_wait().context("waiting for gatehouse")
        })
    }

    /// Kills the daemon (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // Either may fail only because the process already exited.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn open_log(&self) -> Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))
    }

    fn apply_env(&self, cmd: &mut Command) {
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    /// Whether the daemon exited because its PostgreSQL port was taken,
    /// the one port a fresh pick here can fix.
    fn lost_port_race(&self) -> bool {
        let listener = format!("binding PostgreSQL listener 127.0.0.1:{}", self.pg_port);
        log_tail(&self.log_path(), LOG_TAIL_LINES)
            .lines()
            .any(|line| line.contains(&listener) && line.contains("Address already in use"))
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Finds the `gatehouse` binary: `$GATEHOUSE_BIN` if set, else the most
/// recently built of `{debug,release}/gatehouse` under `$CARGO_TARGET_DIR`,
/// the target directory this test binary lives in, and `<workspace>/target`.
pub fn gatehouse_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{BIN_ENV}={} does not name a file", path.display());
        }
        return Ok(path);
    }
    let mut target_dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        target_dirs.push(dir.into());
    }
    if let Some(dir) = option_env!("CARGO_TARGET_DIR") {
        target_dirs.push(dir.into());
    }
    // Test binaries live in <target>/<profile>/deps, other binaries in
    // <target>/<profile>; either way an ancestor is the target directory.
    if let Ok(exe) = std::env::current_exe() {
        target_dirs.extend(exe.ancestors().skip(1).take(3).map(Path::to_path_buf));
    }
    target_dirs.push(workspace_root().join("target"));

    let mut best: Option<(SystemTime, PathBuf)> = None;
    for dir in &target_dirs {
        for candidate in [
            dir.join("debug/gatehouse"),
            dir.join("release/gatehouse"),
            dir.join("gatehouse"),
        ] {
            let Ok(meta) = fs::metadata(&candidate) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(t, _)| modified > *t) {
                best = Some((modified, candidate));
            }
        }
    }
    best.map(|(_, path)| path).ok_or_else(|| {
        anyhow!(
            "gatehouse binary not found (searched {target_dirs:?}); run `cargo build -p gatehouse` or set {BIN_ENV}"
        )
    })
}

/// The workspace root, one level above this crate.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
