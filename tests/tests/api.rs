//! The HTTPS API as clients use it: `curl` against `POST
//! /v1/ssh/certificate`, `/healthz` and `/metrics`, `ssh-keygen -L` on the
//! certificates, and `gatehouse login` writing files a stock `ssh` logs in
//! with (against a real OpenSSH `sshd` that trusts the appliance's user CA
//! and presents the appliance's SSH host key).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{APP_DB, DEPLOY_GROUP, RawPg, SmallDisk, World, query, wait_for_log};
use gatehouse_tests::ports::{free_loopback_port, wait_for_port};
use gatehouse_tests::process::run;
use gatehouse_tests::token::now;
use gatehouse_tests::{Claims, OutputExt, PolicySpec};
use serde_json::{Value, json};

/// How long a test waits for the API to listen or a metric to change.
const WAIT: Duration = Duration::from_secs(30);

struct ApiWorld {
    w: World,
    api: u16,
    /// `[listen] ssh` as configured (nothing serves it in these tests).
    ssh: u16,
}

impl ApiWorld {
    fn start(
        tweak: impl FnOnce(gatehouse_tests::ConfigBuilder) -> gatehouse_tests::ConfigBuilder,
    ) -> Result<Self> {
        let (api, ssh) = (free_loopback_port()?, free_loopback_port()?);
        let w = World::start(|c, _, _| {
            tweak(
                c.postgres_plaintext(true)
                    .line_in("listen", &format!("api = \"127.0.0.1:{api}\""))
                    .line_in("listen", &format!("ssh = \"127.0.0.1:{ssh}\""))
                    .raw("[auth.ssh]\nmax_certificate_lifetime = \"10m\"\n"),
            )
        })?;
        if !wait_for_port(api, WAIT, || Ok(true))? {
            bail!("the API did not listen:\n{}", w.log());
        }
        Ok(ApiWorld { w, api, ssh })
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.api)
    }

    /// `curl` with the appliance CA; returns (status, body).
    fn curl(&self, args: &[&str]) -> Result<(u16, String)> {
        curl(&self.w.gh.ca_cert_path(), args)
    }

    /// POST a certificate request with `token` and `body`.
    fn certificate(&self, token: &str, body: &str) -> Result<(u16, Value)> {
        let (status, text) = self.curl(&[
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &self.url("/v1/ssh/certificate"),
        ])?;
        Ok((
            status,
            serde_json::from_str(&text).with_context(|| text.clone())?,
        ))
    }

    fn metrics(&self) -> Result<String> {
        let (status, text) = self.curl(&[&self.url("/metrics")])?;
        if status != 200 {
            bail!("metrics: {status} {text}");
        }
        Ok(text)
    }

    /// Waits until the sample `name` (with its labels) reads `want`.
    fn wait_metric(&self, name: &str, want: f64) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.metrics()?;
            if sample(&text, name) == Some(want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} never read {want}:\n{text}");
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `curl ARGS` trusting `ca`; returns (status, body).
fn curl(ca: &Path, args: &[&str]) -> Result<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-w",
        "\n%{http_code}",
        "--cacert",
    ])
    .arg(ca)
    .args(args);
    let out = run(&mut cmd, Duration::from_secs(60))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text
        .rsplit_once('\n')
        .with_context(|| format!("no status from curl: {text} {}", out.stderr_text()))?;
    Ok((status.trim().parse().unwrap_or(0), body.to_owned()))
}

/// The value of sample `name` (labels included) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn public_key_of(dir: &Path) -> Result<String> {
    let key = dir.join("agent");
    if !key.exists() {
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key);
        run(&mut cmd, Duration::from_secs(30))?.success_text()?;
    }
    Ok(std::fs::read_to_string(key.with_extension("pub"))?
        .trim()
        .to_owned())
}

/// `ssh-keygen -L` of a certificate line.
fn describe_certificate(dir: &Path, cert: &str) -> Result<String> {
    let path = dir.join("agent-cert.pub");
    std::fs::write(&path, format!("{cert}\n"))?;
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-L").arg("-f").arg(&path);
    run(&mut cmd, Duration::from_secs(30))?.success_text()
}

/// `ssh-keygen -y` of a private key: its public half, OpenSSH text.
fn public_half(private: &Path) -> Result<String> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-y").arg("-f").arg(private);
    run(&mut cmd, Duration::from_secs(30))?.success_text()
}

/// "Valid: from 2026-12-02T10:00:00 to 2026-12-02T10:10:00" → seconds.
fn validity_seconds(listing: &str) -> Result<i64> {
    let line = listing
        .lines()
        .find(|l| l.trim_start().starts_with("Valid: from "))
        .context("no Valid line")?;
    let mut parts = line.trim().trim_start_matches("Valid: from ").split(" to ");
    let parse = |s: &str| -> Result<i64> {
        let t = time::PrimitiveDateTime::parse(
            s.trim(),
            &time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )?;
        Ok(t.assume_utc().unix_timestamp())
    };
    let from = parse(parts.next().context("from")?)?;
    let to = parse(parts.next().context("to")?)?;
    Ok(to - from)
}

#[test]
fn a_good_token_gets_a_certificate_bounded_by_the_token_and_the_lifetime() -> Result<()> {
    let a = ApiWorld::start(|c| c)?;
    let keys = tempfile::tempdir()?;
    let public = public_key_of(keys.path())?;
    let body = json!({ "public_key": public }).to_string();

    // A token good for an hour: the 10-minute lifetime bounds it.
    let token =
        a.w.issuer
            .mint(&Claims::new("alice").groups([DEPLOY_GROUP]).exp_in(3600))?;
    let before = now();
    let (status, reply) = a.certificate(&token, &body)?;
    assert_eq!(status, 200, "{reply}\nlog:\n{}", a.w.log());
    let valid_before = reply["valid_before"].as_i64().context("valid_before")?;
    assert!(
        (before + 600..=now() + 600).contains(&valid_before),
        "{valid_before} is not now + 10m"
    );
    assert_eq!(reply["ssh_port"], a.ssh);
    let host_key = public_half(&a.w.gh.data_dir().join("ssh-host.key"))?;
    assert_eq!(
        reply["host_key"],
        host_key.as_str(),
        "the SSH listener's host key"
    );
    let cert = reply["certificate"].as_str().context("certificate")?;
    assert!(
        cert.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{cert}"
    );
    let listing = describe_certificate(keys.path(), cert)?;
    assert!(
        listing.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{listing}"
    );
    assert!(listing.contains("Key ID: \"oidc:alice\""), "{listing}");
    assert!(
        listing.contains("Principals: \n                oidc:alice"),
        "{listing}"
    );
    assert!(listing.contains("groups@gatehouse"), "{listing}");
    let ca = public_half(&a.w.gh.data_dir().join("ssh-user-ca.key"))?;
    let ca_fingerprint = {
        let ca_file = keys.path().join("ca.pub");
        std::fs::write(&ca_file, format!("{ca}\n"))?;
        let mut cmd = Command::new("ssh-keygen");
        cmd.arg("-l").arg("-f").arg(&ca_file);
        run(&mut cmd, Duration::from_secs(30))?.success_text()?
    };
    let signing = ca_fingerprint
        .split_whitespace()
        .nth(1)
        .context("fingerprint")?;
    assert!(
        listing.contains(signing),
        "signed by the user CA {signing}:\n{listing}"
    );
    // Backdated a minute for clock skew, valid 10 minutes from issue.
    assert!(
        (655..=665).contains(&validity_seconds(&listing)?),
        "{listing}"
    );

    // A token with two minutes left: its expiry bounds the certificate.
    let exp = now() + 120;
    let short =
        a.w.issuer
            .mint(&Claims::new("alice").groups([DEPLOY_GROUP]).exp(exp))?;
    let (status, reply) = a.certificate(&short, &body)?;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["valid_before"], exp);
    let listing = describe_certificate(keys.path(), reply["certificate"].as_str().unwrap_or(""))?;
    // From a minute before issue to the token's exp: at most 180 s, less
    // the time the request took.
    assert!(
        (120..=180).contains(&validity_seconds(&listing)?),
        "{listing}"
    );

    assert!(a.w.log().contains("SSH certificate issued"));
    common::assert_token_not_logged(&a.w.gh, &token);
    Ok(())
}

#[test]
fn bad_tokens_keys_and_bodies_are_refused_with_a_reason() -> Result<()> {
    let a = ApiWorld::start(|c| c)?;
    let keys = tempfile::tempdir()?;
    let body = json!({ "public_key": public_key_of(keys.path())? }).to_string();
    let good = a.w.token("alice")?;

    for (case, token, reason) in [
        (
            "expired",
            a.w.issuer.mint(&Claims::new("alice").exp_in(-600))?,
            "invalid token: token expired",
        ),
        (
            "forged",
            a.w.issuer.token_bad_signature(&Claims::new("alice"))?,
            "invalid token: bad signature",
        ),
        (
            "alg-none",
            a.w.issuer.token_alg_none(&Claims::new("alice"))?,
            "invalid token: algorithm none is not allowed",
        ),
        (
            "garbage",
            "not-a-jwt".to_owned(),
            "invalid token: malformed token: not a signed JWT",
        ),
    ] {
        let (status, reply) = a.certificate(&token, &body)?;
        assert_eq!(status, 401, "[{case}] {reply}");
        assert_eq!(reply["error"], reason, "[{case}]");
        assert!(
            !reply.to_string().contains(&token),
            "[{case}] the token is echoed"
        );
        common::assert_token_not_logged(&a.w.gh, &token);
    }
    // No Authorization header, and another scheme.
    let (status, text) = a.curl(&["--data-binary", &body, &a.url("/v1/ssh/certificate")])?;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("missing bearer token"), "{text}");
    let (status, _) = a.curl(&[
        "-H",
        &format!("Authorization: Basic {good}"),
        "--data-binary",
        &body,
        &a.url("/v1/ssh/certificate"),
    ])?;
    assert_eq!(status, 401);

    for (case, body, says) in [
        (
            "not json",
            "public_key=x".to_owned(),
            "the body must be JSON",
        ),
        (
            "no key",
            json!({ "key": "x" }).to_string(),
            "the body must be JSON",
        ),
        (
            "bad key",
            json!({ "public_key": "ssh-ed25519 AAAAnotbase64" }).to_string(),
            "not an OpenSSH public key",
        ),
        (
            "private key",
            json!({ "public_key": std::fs::read_to_string(keys.path().join("agent"))? })
                .to_string(),
            "not an OpenSSH public key",
        ),
    ] {
        let (status, reply) = a.certificate(&good, &body)?;
        assert_eq!(status, 400, "[{case}] {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "[{case}] {reply}");
    }
    // A body over the cap, declared or streamed.
    let huge = json!({ "public_key": "x".repeat(100_000) }).to_string();
    let (status, text) = a.curl(&[
        "-H",
        &format!("Authorization: Bearer {good}"),
        "--data-binary",
        &huge,
        &a.url("/v1/ssh/certificate"),
    ])?;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than 16384 bytes"), "{text}");
    // A header over the cap: refused by the HTTP layer (431) or, if it
    // arrived whole in one read, by the token's own cap.
    let (status, text) = a.curl(&[
        "-H",
        &format!("Authorization: Bearer {}", "x".repeat(100_000)),
        "--data-binary",
        &body,
        &a.url("/v1/ssh/certificate"),
    ])?;
    assert!(
        status == 431 || (status == 401 && text.contains("longer than 32768 bytes")),
        "{status} {text}"
    );
    // Methods and paths.
    assert_eq!(a.curl(&[&a.url("/v1/ssh/certificate")])?.0, 405);
    assert_eq!(a.curl(&[&a.url("/nope")])?.0, 404);

    // Everyone else is still served.
    let (status, reply) = a.certificate(&good, &body)?;
    assert_eq!(status, 200, "{reply}");
    Ok(())
}

#[test]
fn a_client_that_never_finishes_its_request_is_dropped() -> Result<()> {
    let a = ApiWorld::start(|c| c)?;
    // Plain TCP that never starts TLS, and TLS that never sends a request.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", a.api))?;
    let mut tls = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{}", a.api))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    silent.set_read_timeout(Some(WAIT))?;
    let started = Instant::now();
    let mut byte = [0u8; 1];
    use std::io::Read as _;
    let n = silent.read(&mut byte).unwrap_or(0);
    assert_eq!(n, 0, "the server closed the silent connection");
    assert!(started.elapsed() < WAIT, "closed only by our own timeout");
    let deadline = Instant::now() + WAIT;
    while tls.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = tls.kill();
            bail!("a TLS client that sends no request is never dropped");
        }
        thread::sleep(Duration::from_millis(200));
    }
    // Meanwhile health checks were answered.
    assert_eq!(a.curl(&[&a.url("/healthz")])?.0, 200);
    Ok(())
}

#[test]
fn certificate_requests_are_rate_limited_not_refused_wholesale() -> Result<()> {
    let a = ApiWorld::start(|c| c)?;
    // Many requests at once over a few connections; each is answered
    // 401 (bad token) or 429 (over the rate), never anything else, and
    // the burst allowance is honoured.
    let url = a.url("/v1/ssh/certificate");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-Z",
        "--parallel-max",
        "8",
        "-w",
        "%{http_code}\n",
        "--cacert",
    ])
    .arg(a.w.gh.ca_cert_path())
    .args(["-H", "Authorization: Bearer x.y.z", "--data-binary", "{}"]);
    for _ in 0..400 {
        cmd.args(["-o", "/dev/null", &url]);
    }
    let started = Instant::now();
    let out = run(&mut cmd, Duration::from_secs(120))?;
    let elapsed = started.elapsed();
    let codes: Vec<&str> = std::str::from_utf8(&out.stdout)?.lines().collect();
    assert_eq!(codes.len(), 400, "{}", out.stderr_text());
    let limited = codes.iter().filter(|c| **c == "429").count();
    let refused = codes.iter().filter(|c| **c == "401").count();
    assert_eq!(limited + refused, 400, "{codes:?}");
    assert!(
        refused >= 100,
        "the burst of 100 was not allowed: {refused}"
    );
    // 400 requests at 50/s after a burst of 100 need 6 s to all pass.
    if elapsed < Duration::from_secs(5) {
        assert!(limited > 0, "400 requests in {elapsed:?} and none limited");
    }
    // After a pause the endpoint serves again.
    thread::sleep(Duration::from_secs(2));
    let keys = tempfile::tempdir()?;
    let body = json!({ "public_key": public_key_of(keys.path())? }).to_string();
    let (status, reply) = a.certificate(&a.w.token("after")?, &body)?;
    assert_eq!(status, 200, "{reply}");
    Ok(())
}

/// A throwaway OpenSSH `sshd` on loopback standing in for the SSH
/// listener: it presents the appliance's SSH host key and trusts the
/// appliance's user CA for the principals listed per user.
struct CertSshd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl CertSshd {
    fn start(host_key: &Path, user_ca: &Path, user: &str, principal: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_loopback_port()?;
        let ca_pub = dir.path().join("user-ca.pub");
        std::fs::write(&ca_pub, format!("{}\n", public_half(user_ca)?))?;
        let principals = dir.path().join("principals");
        std::fs::create_dir_all(&principals)?;
        std::fs::write(principals.join(user), format!("{principal}\n"))?;
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nAuthorizedKeysFile none\nTrustedUserCAKeys {}\n\
                 AuthorizedPrincipalsFile {}/%u\nLogLevel VERBOSE\n",
                host_key.display(),
                ca_pub.display(),
                principals.display()
            ),
        )?;
        std::fs::create_dir_all("/run/sshd")?;
        let log = std::fs::File::create(dir.path().join("sshd.log"))?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting sshd")?;
        let mut sshd = CertSshd {
            child,
            port,
            _dir: dir,
        };
        let alive = &mut sshd.child;
        if !wait_for_port(port, WAIT, || Ok(alive.try_wait()?.is_none()))? {
            bail!("sshd did not start: {}", sshd.log());
        }
        Ok(sshd)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for CertSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn gatehouse_login_writes_a_key_certificate_and_known_hosts_that_stock_ssh_uses() -> Result<()> {
    let a = ApiWorld::start(|c| c)?;
    let data = a.w.gh.data_dir();
    let token_file = a.w.gh.workdir().join("token.jwt");
    std::fs::write(&token_file, format!("{}\n", a.w.token("alice")?))?;
    // Certificates are issued at first use, and the host key exists with
    // the API: sshd serves that very key.
    let sshd = CertSshd::start(
        &data.join("ssh-host.key"),
        &data.join("ssh-user-ca.key"),
        "root",
        "oidc:alice",
    )?;
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().join("login");
    let login = |extra: &[&str]| -> Result<std::process::Output> {
        let mut args = vec![
            "login".to_owned(),
            "--api".into(),
            format!("https://127.0.0.1:{}", a.api),
            "--token-file".into(),
            token_file.to_string_lossy().into_owned(),
            "--ca-file".into(),
            a.w.gh.ca_cert_path().to_string_lossy().into_owned(),
            "--dir".into(),
            out_dir.to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(gatehouse_tests::gatehouse::gatehouse_bin()?);
        cmd.args(&args).env_remove("GATEHOUSE_CONFIG");
        run(&mut cmd, Duration::from_secs(60))
    };
    // --ssh-port: the sshd stands where the SSH listener will be.
    let port = sshd.port.to_string();
    let out = login(&["--ssh-port", &port])?;
    let command = out.success_text()?;
    assert!(
        out.stderr_text()
            .contains("certificate for oidc:alice valid until"),
        "{}",
        out.stderr_text()
    );

    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| -> Result<u32> { Ok(std::fs::metadata(p)?.permissions().mode() & 0o777) };
    assert_eq!(mode(&out_dir)?, 0o700);
    assert_eq!(mode(&out_dir.join("id_ed25519"))?, 0o600);
    let known = std::fs::read_to_string(out_dir.join("known_hosts"))?;
    let host_key = public_half(&data.join("ssh-host.key"))?;
    assert_eq!(known.trim(), format!("[127.0.0.1]:{port} {host_key}"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-L")
        .arg("-f")
        .arg(out_dir.join("id_ed25519-cert.pub"));
    let listing = run(&mut cmd, Duration::from_secs(30))?.success_text()?;
    assert!(listing.contains("Key ID: \"oidc:alice\""), "{listing}");
    let cert_key = listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("Public key: ED25519-CERT "))
        .context("public key line")?
        .to_owned();
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-l").arg("-f").arg(out_dir.join("id_ed25519"));
    let own = run(&mut cmd, Duration::from_secs(30))?.success_text()?;
    assert!(
        own.contains(&cert_key),
        "the certificate is for the written key: {own} vs {cert_key}"
    );

    // The printed command, as a user would paste it, with a connection.
    assert!(command.starts_with("ssh -i "), "{command}");
    assert!(
        command.contains(&format!("-p {port} CONNECTION@127.0.0.1")),
        "{command}"
    );
    let words: Vec<String> = command
        .replace("CONNECTION@", "root@")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let ssh = |extra: &[&str]| -> Result<std::process::Output> {
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=20",
            ])
            .args(extra);
        run(&mut cmd, Duration::from_secs(60))
    };
    let out = ssh(&["echo", "certified"])?;
    assert_eq!(out.success_text().with_context(|| sshd.log())?, "certified");

    // The known_hosts entry is what made the host trusted.
    std::fs::write(out_dir.join("known_hosts"), "")?;
    let out = ssh(&["echo", "unpinned"])?;
    assert!(!out.status.success(), "an unknown host key was accepted");
    assert!(
        out.stderr_text().contains("Host key verification failed"),
        "{}",
        out.stderr_text()
    );

    // A bad token: the refusal reason, nothing written over the old files.
    std::fs::write(&token_file, "not-a-jwt\n")?;
    let out = login(&[])?;
    assert!(!out.status.success());
    assert!(
        out.stderr_text()
            .contains("401 Unauthorized: invalid token: malformed token"),
        "{}",
        out.stderr_text()
    );
    // Without the CA the appliance's certificate is not trusted.
    let mut cmd = Command::new(gatehouse_tests::gatehouse::gatehouse_bin()?);
    cmd.args([
        "login",
        "--api",
        &format!("https://127.0.0.1:{}", a.api),
        "--token-file",
    ])
    .arg(&token_file)
    .arg("--dir")
    .arg(dir.path().join("other"));
    let out = run(&mut cmd, Duration::from_secs(60))?;
    assert!(!out.status.success());
    assert!(
        out.stderr_text().contains("certificate"),
        "{}",
        out.stderr_text()
    );
    Ok(())
}

#[test]
fn healthz_and_metrics_count_real_sessions() -> Result<()> {
    let a = ApiWorld::start(|c| {
        c.policy(
            PolicySpec::new("default")
                .recording("batched")
                .line("[[policies.default.rules]]")
                .line("action = \"approve\"")
                .line("statements = [\"delete\"]")
                .line("timeout = \"60s\""),
        )
    })?;
    let (status, text) = a.curl(&[&a.url("/healthz")])?;
    assert_eq!((status, text.as_str()), (200, "{\"status\":\"ok\"}"));

    let token = a.w.token("metrics-bot")?;
    for i in 0..2 {
        let out =
            a.w.psql(&format!("ok-{i}"), &token, "select repeat('x', 100000)")?;
        out.success_text()?;
    }
    let out = a.w.psql("refused", "not-a-jwt", "select 1")?;
    assert!(!out.status.success());
    a.wait_metric(
        "gatehouse_sessions_total{protocol=\"postgres\",outcome=\"closed\"}",
        2.0,
    )?;
    a.wait_metric(
        "gatehouse_sessions_total{protocol=\"postgres\",outcome=\"refused\"}",
        1.0,
    )?;
    let text = a.metrics()?;
    let to_client = sample(
        &text,
        "gatehouse_relayed_bytes_total{protocol=\"postgres\",direction=\"to_client\"}",
    )
    .context("to_client")?;
    let to_target = sample(
        &text,
        "gatehouse_relayed_bytes_total{protocol=\"postgres\",direction=\"to_target\"}",
    )
    .context("to_target")?;
    assert!(
        to_client >= 200_000.0,
        "two 100 kB results relayed: {to_client}\n{text}"
    );
    assert!(to_target > 0.0, "{text}");
    assert_eq!(sample(&text, "gatehouse_recorder_up"), Some(1.0), "{text}");
    assert!(
        text.contains("# TYPE gatehouse_sessions_total counter"),
        "{text}"
    );

    // A live session, and a statement held for approval.
    let mut live = RawPg::connect(a.w.gh.pg_port())?;
    live.login_ok("live", APP_DB, &token)?;
    a.wait_metric("gatehouse_sessions_live{protocol=\"postgres\"}", 1.0)?;
    live.send(&query("delete from nothing_here"))?;
    a.wait_metric("gatehouse_approvals_pending", 1.0)?;
    drop(live);
    a.wait_metric("gatehouse_approvals_pending", 0.0)?;
    a.wait_metric("gatehouse_sessions_live{protocol=\"postgres\"}", 0.0)?;

    // Draining: 503 with the reason while sessions finish.
    let mut held = RawPg::connect(a.w.gh.pg_port())?;
    held.login_ok("held", APP_DB, &token)?;
    a.w.gh.signal("TERM")?;
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, text) = a.curl(&[&a.url("/healthz")])?;
        if status == 503 {
            let v: Value = serde_json::from_str(&text)?;
            assert!(
                v["reasons"]
                    .to_string()
                    .contains("shutting down: draining sessions"),
                "{text}"
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("healthz never said 503 while draining: {status} {text}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    held.terminate()?;
    Ok(())
}

#[test]
fn healthz_is_503_when_the_recorder_cannot_write() -> Result<()> {
    let (api, ssh) = (free_loopback_port()?, free_loopback_port()?);
    let pg = gatehouse_tests::PgCluster::start()?;
    let issuer = gatehouse_tests::Issuer::start()?;
    let config = gatehouse_tests::ConfigBuilder::standard(&issuer, &pg)
        .line_in("listen", &format!("api = \"127.0.0.1:{api}\""))
        .line_in("listen", &format!("ssh = \"127.0.0.1:{ssh}\""));
    let mut gh = gatehouse_tests::Gatehouse::stage(&config)?;
    let disk = SmallDisk::mount(&gh.data_dir(), "16m")?;
    gh.serve()?;
    if !wait_for_port(api, WAIT, || Ok(true))? {
        bail!("no API:\n{}", gh.log());
    }
    let ca = gh.ca_cert_path();
    let get = |path: &str| curl(&ca, &[&format!("https://127.0.0.1:{api}{path}")]);
    assert_eq!(get("/healthz")?.0, 200);
    disk.fill()?;
    let token = issuer.mint(&Claims::new("disk").groups([DEPLOY_GROUP]))?;
    let big = "x".repeat(100_000);
    let _ = common::tls_target(&gh, APP_DB, "disk", &token).psql(&format!("select 1 -- {big}"))?;
    wait_for_log(&gh, "recording flush failed", WAIT)?;
    let (status, text) = get("/healthz")?;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("the recorder's last flush failed"), "{text}");
    let (_, metrics) = get("/metrics")?;
    assert!(
        sample(&metrics, "gatehouse_recorder_failed_flushes_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    drop(gh);
    drop(disk);
    Ok(())
}
