//! An admin SSH endpoint for tests: the standard world with
//! `[listen] admin_ssh`, operators alice (approver) and bob, a key for
//! mallory that is nobody's, the endpoint's host key pinned, and stock
//! `ssh` run as any of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use gatehouse_tests::ports::free_loopback_port;
use gatehouse_tests::{ConfigBuilder, Gatehouse, Issuer, OutputExt, PgCluster, PolicySpec};

use super::World;

pub const APPROVAL_RULE: &str = r#"
[[policies.default.rules]]
name = "orders-delete"
action = "approve"
statements = ["delete"]
tables = ["orders"]
timeout = "60s"
"#;

/// A gateway with the admin endpoint, operators alice (approver) and bob,
/// and a key for mallory that is nobody's.
pub struct Admin {
    pub w: World,
    pub port: u16,
    pub keys: tempfile::TempDir,
    pub known_hosts: PathBuf,
}

pub fn keygen(dir: &Path, name: &str) -> Result<String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("{name}@test"))
        .arg("-f")
        .arg(dir.join(name))
        .output()
        .context("running ssh-keygen (openssh-client)")?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", out.stderr_text());
    }
    Ok(std::fs::read_to_string(dir.join(format!("{name}.pub")))?
        .trim()
        .to_owned())
}

impl Admin {
    pub fn start() -> Result<Admin> {
        Self::start_with(|_| Ok(()))
    }

    /// As `start`, running `before_serve` on the staged daemon (its work
    /// directory exists, it does not run yet).
    pub fn start_with(before_serve: impl Fn(&Gatehouse) -> Result<()>) -> Result<Admin> {
        let keys = tempfile::tempdir()?;
        let alice = keygen(keys.path(), "alice")?;
        let bob = keygen(keys.path(), "bob")?;
        keygen(keys.path(), "mallory")?;
        // A free port may be taken by another test before the daemon binds
        // it; the daemon then exits ("address in use") and we try another.
        let mut attempt = 0;
        let (w, port) = loop {
            attempt += 1;
            let port = free_loopback_port()?;
            let config = |c: ConfigBuilder| {
                c.line_in("listen", &format!("admin_ssh = \"127.0.0.1:{port}\""))
                    .policy(PolicySpec::new("default").line("default = \"allow\""))
                    .raw(APPROVAL_RULE)
                    .raw(&format!(
                        "[[operators]]\nname = \"alice\"\npublic_key = \"{alice}\"\napprover = true\n\n\
                         [[operators]]\nname = \"bob\"\npublic_key = \"{bob}\"\n"
                    ))
            };
            let started = (|| {
                let pg = PgCluster::start()?;
                let issuer = Issuer::start()?;
                let mut gh = Gatehouse::stage(&config(ConfigBuilder::standard(&issuer, &pg)))?;
                before_serve(&gh)?;
                gh.serve()?;
                Ok::<_, anyhow::Error>(World { gh, issuer, pg })
            })();
            // The daemon binds the admin port before the PostgreSQL one, so
            // it is ready once World::start returns.
            match started {
                Ok(w) => break (w, port),
                Err(e)
                    if attempt < 3 && format!("{e:#}").contains("binding admin SSH listener") => {}
                Err(e) => return Err(e),
            }
        };
        // Pin the host key the daemon created: a client that trusts it
        // checks the endpoint really serves it.
        let host_pub = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(w.gh.data_dir().join("admin-ssh-host.key"))
            .output()?;
        if !host_pub.status.success() {
            bail!("reading the host key: {}", host_pub.stderr_text());
        }
        let known_hosts = keys.path().join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}", host_pub.stdout_text()),
        )?;
        Ok(Admin {
            w,
            port,
            keys,
            known_hosts,
        })
    }

    pub fn options(&self, key: &str) -> Vec<String> {
        [
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-i".into(),
            self.keys.path().join(key).display().to_string(),
        ])
        .collect()
    }

    /// `ssh -p PORT USER@127.0.0.1 COMMAND` with `key`.
    pub fn ssh_as(&self, user: &str, key: &str, command: &str) -> Result<Output> {
        run(Command::new("ssh")
            .args(self.options(key))
            .args(["-p", &self.port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .arg(command))
    }

    pub fn ssh(&self, command: &str) -> Result<Output> {
        self.ssh_as("alice", "alice", command)
    }
}

pub fn run(cmd: &mut Command) -> Result<Output> {
    Ok(cmd.stdin(Stdio::null()).output()?)
}
