//! The SSH side of the world: an [`Sshd`] target, the gateway in front of
//! it with `[listen] ssh`, and stock OpenSSH clients (`ssh`, `scp`, `sftp`)
//! pointed at the gateway the way an agent would.
//!
//! Agents log in with their token as the password (fed to OpenSSH through
//! `SSH_ASKPASS`, so no terminal is needed; test tokens stay under
//! OpenSSH's 1,023-byte prompt limit) or with a certificate from the
//! gateway's user CA. The gateway's host key is pinned in a
//! `known_hosts` file, so every client run also checks that the gateway
//! serves the key it created.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::config::ConfigBuilder;
use crate::gatehouse::Gatehouse;
use crate::issuer::Issuer;
use crate::ports::free_loopback_port;
use crate::process::run;
use crate::sshd::{Sshd, TEST_USER};
use crate::token::Claims;
use crate::{ConnectionSpec, RoleSpec};

/// The SSH connection of the standard SSH world.
pub const SSH_CONNECTION: &str = "web-1";
/// The group granted it.
pub const SSH_GROUP: &str = "ci-deploy";

/// Deadline for one client run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A target, an issuer and a gateway with an SSH listener.
pub struct SshWorld {
    // Field order is drop order: the gateway first.
    pub gh: Gatehouse,
    pub issuer: Issuer,
    pub sshd: Sshd,
    /// The gateway's SSH port on 127.0.0.1.
    pub port: u16,
    /// known_hosts, askpass scripts, agent keys.
    pub client_dir: TempDir,
}

impl SshWorld {
    /// `web-1` → the sshd, granted to `ci-deploy`, under policy `default`,
    /// adjusted by `tweak`.
    pub fn start(tweak: impl Fn(ConfigBuilder, &Sshd) -> ConfigBuilder) -> Result<Self> {
        let sshd = Sshd::start()?;
        let issuer = Issuer::start()?;
        Self::start_with(sshd, issuer, tweak)
    }

    pub fn start_with(
        sshd: Sshd,
        issuer: Issuer,
        tweak: impl Fn(ConfigBuilder, &Sshd) -> ConfigBuilder,
    ) -> Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_loopback_port()?;
            let config = tweak(
                ConfigBuilder::new(issuer.url())
                    .line_in("listen", &format!("ssh = \"127.0.0.1:{port}\""))
                    .connection(ConnectionSpec::ssh(
                        SSH_CONNECTION,
                        &sshd.address(),
                        TEST_USER,
                        &sshd.gateway_key(),
                        &sshd.host_key()?,
                    ))
                    .role(RoleSpec::new("deployers", &[SSH_GROUP], &[SSH_CONNECTION])),
                &sshd,
            );
            match Gatehouse::start(&config) {
                Ok(gh) => {
                    let client_dir = tempfile::Builder::new()
                        .prefix("gatehouse-agent-")
                        .tempdir()?;
                    let world = SshWorld {
                        gh,
                        issuer,
                        sshd,
                        port,
                        client_dir,
                    };
                    world.pin_host_key()?;
                    return Ok(world);
                }
                Err(e) if attempt < 3 && format!("{e:#}").contains("binding SSH listener") => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn pin_host_key(&self) -> Result<()> {
        let out = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(self.gh.data_dir().join("ssh-host.key"))
            .output()?;
        if !out.status.success() {
            bail!(
                "reading the gateway's host key: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::write(
            self.known_hosts(),
            format!(
                "[127.0.0.1]:{} {}",
                self.port,
                String::from_utf8_lossy(&out.stdout)
            ),
        )?;
        Ok(())
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.client_dir.path().join("known_hosts")
    }

    /// A good token for `sub` in the granted group.
    pub fn token(&self, sub: &str) -> Result<String> {
        self.issuer.mint(&Claims::new(sub).groups([SSH_GROUP]))
    }

    /// Options every client run shares: the pinned gateway key, no agent,
    /// no config from the machine.
    fn common_options(&self) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!(
            "-oUserKnownHostsFile={}",
            self.known_hosts().display()
        )])
        .collect()
    }

    /// Options and environment to log in with `token` as the password.
    pub fn token_auth(&self, token: &str) -> Result<Auth> {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let file = self.client_dir.path().join(format!("token-{n}"));
        fs::write(&file, token)?;
        let script = self.client_dir.path().join(format!("askpass-{n}"));
        fs::write(&script, format!("#!/bin/sh\ncat '{}'\n", file.display()))?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o700))?;
        let mut options = self.common_options();
        options.extend(
            [
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
                // `sftp -b` asks for batch mode, which would rule out the
                // askpass password; the first value given wins.
                "-o",
                "BatchMode=no",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        Ok(Auth {
            options,
            env: vec![
                ("SSH_ASKPASS".into(), script.display().to_string()),
                ("SSH_ASKPASS_REQUIRE".into(), "force".into()),
                ("DISPLAY".into(), ":0".into()),
            ],
        })
    }

    /// Options to log in with the private key `key` and its certificate
    /// `key-cert.pub` beside it.
    pub fn cert_auth(&self, key: &Path) -> Auth {
        let mut options = self.common_options();
        options.extend([
            "-o".into(),
            "PreferredAuthentications=publickey".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-i".into(),
            key.display().to_string(),
        ]);
        Auth {
            options,
            env: Vec::new(),
        }
    }

    /// `ssh -p PORT CONNECTION@127.0.0.1 ARGS...`.
    pub fn ssh(&self, auth: &Auth, connection: &str, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("ssh");
        auth.apply(&mut cmd);
        cmd.args(["-p", &self.port.to_string()])
            .arg(format!("{connection}@127.0.0.1"))
            .args(args);
        run(&mut cmd, CLIENT_TIMEOUT)
    }

    /// `scp -P PORT [extra] from to` (remote paths as `web-1@127.0.0.1:PATH`).
    pub fn scp(&self, auth: &Auth, extra: &[&str], from: &str, to: &str) -> Result<Output> {
        let mut cmd = Command::new("scp");
        auth.apply(&mut cmd);
        cmd.args(["-P", &self.port.to_string()])
            .args(extra)
            .arg(from)
            .arg(to);
        run(&mut cmd, CLIENT_TIMEOUT)
    }

    /// `sftp -b -` with `batch` on stdin, working in `cwd`.
    pub fn sftp(&self, auth: &Auth, batch: &str, cwd: &Path) -> Result<Output> {
        let mut cmd = Command::new("sftp");
        auth.apply(&mut cmd);
        cmd.current_dir(cwd)
            .args(["-P", &self.port.to_string(), "-b", "-"])
            .arg(format!("{SSH_CONNECTION}@127.0.0.1"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting sftp")?;
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().context("sftp stdin")?;
            stdin.write_all(batch.as_bytes())?;
        }
        let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(child.wait_with_output()?);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("sftp did not finish within {CLIENT_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A shell command line for `tmux`: `ssh -tt` into `connection` with
    /// `auth`, environment included.
    pub fn ssh_command_line(&self, auth: &Auth, connection: &str) -> String {
        let mut parts: Vec<String> = auth
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect();
        parts.push("ssh".into());
        parts.push("-tt".into());
        parts.extend(auth.options.iter().map(|o| shell_quote(o)));
        parts.push("-p".into());
        parts.push(self.port.to_string());
        parts.push(format!("{connection}@127.0.0.1"));
        parts.join(" ")
    }
}

/// How a client run logs in.
#[derive(Clone, Debug)]
pub struct Auth {
    pub options: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Auth {
    pub fn apply(&self, cmd: &mut Command) {
        cmd.args(&self.options);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }
}

/// Single-quote for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A russh client handler for tests that drive SSH below what stock
/// clients allow (a thousand channels, message order): it takes any host
/// key, since the gateway's own key is not what those tests check.
pub struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}
