//! A throwaway OpenSSH `sshd` as the SSH target behind the gateway.
//!
//! Each [`Sshd`] gets its own directory (config, host key, the key the
//! gateway logs in with, log), listens on a free loopback port and runs
//! `sshd -D -e -f CONF` as root with `UsePAM no`. It lets exactly one user
//! in, [`TEST_USER`], by public key; that user is created once per machine
//! with the password field `*` (sshd refuses users whose field is `!`
//! without PAM). Tests work in their own directory under the user's home
//! ([`Sshd::scratch`]), so parallel tests never share files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::ports::{free_loopback_port, wait_for_port};
use crate::process::{DEFAULT_TIMEOUT, log_tail, run, run_checked};

/// The user the gateway logs in as on the target.
pub const TEST_USER: &str = "gatehouse-ssh";

/// The sshd binary (Debian's `openssh-server`).
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long sshd may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running sshd; dropping it stops it.
pub struct Sshd {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Start sshd on a free loopback port.
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Start sshd with extra `sshd_config` lines.
    pub fn start_with(extra: &[&str]) -> Result<Self> {
        ensure_user()?;
        fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-sshd-")
            .tempdir()
            .context("creating the sshd directory")?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        keygen(&dir.path().join("host_ed25519"), "sshd host key")?;
        keygen(&dir.path().join("gateway_ed25519"), "gateway@test")?;
        fs::copy(
            dir.path().join("gateway_ed25519.pub"),
            dir.path().join("authorized_keys"),
        )?;
        fs::set_permissions(
            dir.path().join("authorized_keys"),
            fs::Permissions::from_mode(0o644),
        )?;
        let mut attempt = 0;
        let log_path = dir.path().join("sshd.log");
        let (port, child) = loop {
            attempt += 1;
            let port = free_loopback_port()?;
            let conf = dir.path().join("sshd_config");
            fs::write(&conf, config(dir.path(), port, extra))?;
            let log = fs::File::create(&log_path)?;
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {SSHD} (package openssh-server)"))?;
            if wait_for_port(port, READY_TIMEOUT, || Ok(child.try_wait()?.is_none()))? {
                break (port, child);
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = log_tail(&log_path, 50);
            if attempt < 3 && log.contains("Address already in use") {
                continue;
            }
            bail!("sshd did not start on 127.0.0.1:{port}:\n{log}");
        };
        Ok(Sshd {
            dir,
            port,
            child: Some(child),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The target's host public key line (`ssh-ed25519 AAAA... comment`),
    /// what a gateway pins.
    pub fn host_key(&self) -> Result<String> {
        Ok(
            fs::read_to_string(self.dir.path().join("host_ed25519.pub"))?
                .trim()
                .to_owned(),
        )
    }

    /// The private key the gateway logs in with.
    pub fn gateway_key(&self) -> PathBuf {
        self.dir.path().join("gateway_ed25519")
    }

    /// The sshd log so far.
    pub fn log(&self) -> String {
        log_tail(&self.dir.path().join("sshd.log"), 200)
    }

    /// A fresh directory under the test user's home, owned by that user,
    /// removed on drop.
    pub fn scratch(&self) -> Result<Scratch> {
        let home = PathBuf::from(format!("/home/{TEST_USER}"));
        let dir = tempfile::Builder::new()
            .prefix("t-")
            .tempdir_in(&home)
            .with_context(|| format!("creating a directory in {}", home.display()))?;
        chown(dir.path())?;
        Ok(Scratch { dir })
    }

    /// Stop sshd (idempotent).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory in the test user's home.
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file owned by the test user.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        fs::write(&path, contents)?;
        chown(&path)?;
        Ok(path)
    }
}

/// `MaxSessions 64`: above the gateway's own 32 channels per connection,
/// so tests of that limit meet the gateway's and not sshd's default of 10.
fn config(dir: &Path, port: u16, extra: &[&str]) -> String {
    let d = dir.display();
    let mut text = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {d}/host_ed25519\n\
         PidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         StrictModes no\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         AllowUsers {TEST_USER}\n\
         PermitRootLogin no\n\
         AcceptEnv LANG LC_*\n\
         Subsystem sftp internal-sftp\n\
         AllowTcpForwarding yes\n\
         MaxSessions 64\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         LogLevel VERBOSE\n"
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Create the test user once (a racing creator is fine).
fn ensure_user() -> Result<()> {
    let exists = Command::new("id")
        .arg(TEST_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !exists {
        let out = run(
            Command::new("useradd")
                .args(["-m", "-s", "/bin/bash"])
                .arg(TEST_USER),
            DEFAULT_TIMEOUT,
        )?;
        // 9: created by a test running at the same time.
        if !out.status.success() && out.status.code() != Some(9) {
            bail!(
                "useradd {TEST_USER}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // `*`: no password, but not locked (`!`), which sshd without PAM refuses.
    run_checked(
        Command::new("usermod").args(["-p", "*", TEST_USER]),
        DEFAULT_TIMEOUT,
    )?;
    Ok(())
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    run_checked(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
        DEFAULT_TIMEOUT,
    )?;
    Ok(())
}

fn chown(path: &Path) -> Result<()> {
    run_checked(
        Command::new("chown")
            .arg(format!("{TEST_USER}:{TEST_USER}"))
            .arg(path),
        DEFAULT_TIMEOUT,
    )?;
    Ok(())
}
