//! The SSH gateway with stock OpenSSH clients against a real sshd: exec
//! with stdout, stderr and exit status; token-as-password and certificate
//! logins; refusals that read the same for unknown and forbidden
//! connections; bad certificates; and what the recording holds.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use common::{events_of_kind, show_session};
use gatehouse_actors::auth::Identity;
use gatehouse_actors::auth::certificate;
use gatehouse_tests::ports::{free_loopback_port, wait_for_port};
use gatehouse_tests::process::run;
use gatehouse_tests::ssh_client::{CLIENT_TIMEOUT, SSH_CONNECTION, SSH_GROUP};
use gatehouse_tests::{Claims, OutputExt, SshWorld};
use serde_json::Value;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Makes an agent key and a certificate for it signed directly with a CA
/// key file: for the certificates the API never issues (expired, not yet
/// valid, from another CA). Good certificates come from `gatehouse login`
/// ([`certificate_login_through_gatehouse_login_carries_the_identity`]).
fn mint_certificate(
    w: &SshWorld,
    name: &str,
    identity: &Identity,
    valid_after_now: i64,
    lifetime: Duration,
    ca_file: Option<PathBuf>,
) -> Result<PathBuf> {
    let key = w.client_dir.path().join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", out.stderr_text());
    }
    let ca_path = ca_file.unwrap_or_else(|| w.gh.data_dir().join("ssh-user-ca.key"));
    let ca = russh::keys::PrivateKey::from_openssh(&std::fs::read_to_string(&ca_path)?)?;
    let agent = russh::keys::PublicKey::read_openssh_file(key.with_extension("pub"))
        .context("reading the agent key")?;
    let issued_at = (now() as i64 + valid_after_now) as u64;
    let cert = certificate::issue(
        &ca,
        identity,
        &agent,
        issued_at,
        issued_at + lifetime.as_secs(),
        lifetime,
    )?;
    std::fs::write(
        w.client_dir.path().join(format!("{name}-cert.pub")),
        cert.to_openssh()?,
    )?;
    Ok(key)
}

fn identity(sub: &str, groups: &[&str]) -> Identity {
    Identity {
        issuer: "oidc".into(),
        subject: sub.into(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        claims: Default::default(),
    }
}

fn ssh_sessions(w: &SshWorld, n: usize) -> Result<Vec<Value>> {
    common::ended_sessions(&w.gh, "ssh", n)
}

#[test]
fn exec_relays_stdout_stderr_and_exit_status_with_a_token_as_password() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let auth = w.token_auth(&w.token("ci-runner-7")?)?;
    let out = w.ssh(
        &auth,
        SSH_CONNECTION,
        &["echo out-$((6*7)); echo err-line >&2; whoami; exit 3"],
    )?;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        out.stderr_text(),
        w.gh.log()
    );
    assert_eq!(out.stdout_text(), "out-42\ngatehouse-ssh");
    assert!(
        out.stderr_text().contains("err-line"),
        "{}",
        out.stderr_text()
    );

    let sessions = ssh_sessions(&w, 1)?;
    let h = &sessions[0];
    assert_eq!(h["outcome"], "closed");
    assert_eq!(h["connection"], SSH_CONNECTION);
    assert_eq!(h["identity"], "oidc:ci-runner-7");
    let (_, events) = show_session(&w.gh, h["id"].as_str().context("id")?)?;
    let starts = events_of_kind(&events, "ssh_start");
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0]["kind"]["request"], "exec");
    assert!(
        starts[0]["kind"]["command"]
            .as_str()
            .unwrap_or("")
            .contains("echo out-")
    );
    let exits = events_of_kind(&events, "ssh_exit");
    assert_eq!(exits[0]["kind"]["status"], 3);
    let stdout: String = events_of_kind(&events, "ssh_data")
        .iter()
        .filter(|e| e["kind"]["stream"] == "stdout")
        .filter_map(|e| e["kind"]["data"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(stdout, "out-42\ngatehouse-ssh\n");
    Ok(())
}

/// What a CI job does: `gatehouse login` trades its token for a
/// certificate at the HTTPS API, and the stock `ssh` command it prints
/// runs a command on the target through the gateway, recorded under the
/// token's identity, with no token at login.
#[test]
fn certificate_login_through_gatehouse_login_carries_the_identity() -> Result<()> {
    let api = free_loopback_port()?;
    let w = SshWorld::start(|c, _| c.line_in("listen", &format!("api = \"127.0.0.1:{api}\"")))?;
    if !wait_for_port(api, Duration::from_secs(30), || Ok(true))? {
        bail!("the API did not listen:\n{}", w.gh.log());
    }
    let token_file = w.client_dir.path().join("token.jwt");
    std::fs::write(&token_file, format!("{}\n", w.token("cert-bot")?))?;
    let out_dir = w.client_dir.path().join("login");
    let mut login = Command::new(gatehouse_tests::gatehouse::gatehouse_bin()?);
    login
        .arg("login")
        .args(["--api", &format!("https://127.0.0.1:{api}")])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--ca-file")
        .arg(w.gh.ca_cert_path())
        .arg("--dir")
        .arg(&out_dir)
        .env_remove("GATEHOUSE_CONFIG");
    let command = run(&mut login, CLIENT_TIMEOUT)?.success_text()?;
    // The API reports the SSH listener's port; the printed command is
    // pasted as is, with the connection name filled in.
    assert!(
        command.contains(&format!("-p {} CONNECTION@127.0.0.1", w.port)),
        "{command}"
    );
    let words: Vec<String> = command
        .replace("CONNECTION@", &format!("{SSH_CONNECTION}@"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut ssh = Command::new(&words[0]);
    ssh.args(&words[1..])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-F", "/dev/null"])
        .arg("echo via-cert");
    let out = run(&mut ssh, CLIENT_TIMEOUT)?;
    assert_eq!(out.success_text()?, "via-cert", "{}", w.gh.log());
    let sessions = ssh_sessions(&w, 1)?;
    assert_eq!(sessions[0]["identity"], "oidc:cert-bot");
    assert_eq!(sessions[0]["outcome"], "closed");
    Ok(())
}

#[test]
fn bad_certificates_and_plain_keys_are_refused() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let id = identity("cert-bot", &[SSH_GROUP]);
    // Another CA.
    let rogue_ca = w.client_dir.path().join("rogue-ca");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&rogue_ca)
        .output()?;
    let cases = [
        (
            "other-ca",
            mint_certificate(
                &w,
                "other-ca",
                &id,
                0,
                Duration::from_secs(600),
                Some(rogue_ca),
            )?,
        ),
        (
            "expired",
            mint_certificate(&w, "expired", &id, -7200, Duration::from_secs(600), None)?,
        ),
        (
            "not-yet",
            mint_certificate(&w, "not-yet", &id, 7200, Duration::from_secs(600), None)?,
        ),
    ];
    for (what, key) in &cases {
        let out = w.ssh(&w.cert_auth(key), SSH_CONNECTION, &["echo hi"])?;
        assert_eq!(
            out.status.code(),
            Some(255),
            "{what}: {}",
            out.stdout_text()
        );
        assert!(
            out.stderr_text().contains("Permission denied"),
            "{what}: {}",
            out.stderr_text()
        );
    }
    // OpenSSH does not even offer a certificate outside its validity
    // window (it falls back to the plain key); the gateway's own check of
    // the window is covered by `auth::certificate`'s unit tests.
    // A plain key, even one whose certificate would be valid, without it.
    let plain = mint_certificate(&w, "plain", &id, 0, Duration::from_secs(600), None)?;
    std::fs::remove_file(w.client_dir.path().join("plain-cert.pub"))?;
    let out = w.ssh(&w.cert_auth(&plain), SSH_CONNECTION, &["echo hi"])?;
    assert_eq!(out.status.code(), Some(255));

    let sessions = ssh_sessions(&w, 4)?;
    let reasons: Vec<String> = sessions
        .iter()
        .map(|h| {
            assert_eq!(h["outcome"], "refused", "{h}");
            h["reason"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    for want in [
        "not signed by this appliance's user CA",
        "plain public keys are not accepted",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want} in {reasons:#?}"
        );
    }
    Ok(())
}

#[test]
fn unknown_and_forbidden_connections_and_bad_tokens_are_refused_alike() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let good = w.token("ci-runner-7")?;
    let outsider = w.issuer.mint(&Claims::new("outsider").groups(["nobody"]))?;
    let expired = w
        .issuer
        .mint(&Claims::new("late").groups([SSH_GROUP]).exp_in(-3600))?;
    let runs = [
        ("unknown connection", good.as_str(), "no-such-host"),
        ("not granted", outsider.as_str(), SSH_CONNECTION),
        ("expired token", expired.as_str(), SSH_CONNECTION),
        ("garbage token", "not-a-jwt", SSH_CONNECTION),
    ];
    let mut stderrs = Vec::new();
    for (what, token, connection) in runs {
        let out = w.ssh(&w.token_auth(token)?, connection, &["echo hi"])?;
        assert_eq!(
            out.status.code(),
            Some(255),
            "{what}: {}",
            out.stdout_text()
        );
        assert!(out.stdout.is_empty(), "{what}");
        stderrs.push(out.stderr_text().replace(connection, "CONN"));
    }
    // Unknown and forbidden read the same, so names cannot be probed.
    assert_eq!(stderrs[0], stderrs[1]);
    let sessions = ssh_sessions(&w, 4)?;
    let reasons: Vec<String> = sessions
        .iter()
        .map(|h| {
            assert_eq!(h["outcome"], "refused", "{h}");
            h["reason"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("no such connection")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no role grants it")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("token expired")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("malformed token")),
        "{reasons:#?}"
    );
    // Nothing recorded the tokens.
    let log = w.gh.log();
    assert!(!log.contains(&good) && !log.contains(&expired));
    Ok(())
}
