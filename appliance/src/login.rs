//! `gatehouse login`: trade a token for an SSH certificate, for stock
//! `ssh`, `scp` and `sftp`.
//!
//! Makes an ed25519 key pair, asks `POST /v1/ssh/certificate` for a
//! certificate, and writes into DIR (default `~/.gatehouse`, mode 0700):
//! `id_ed25519` (0600), `id_ed25519-cert.pub` and `known_hosts` (the
//! appliance's SSH host key for `[HOST]:PORT`), then prints the `ssh`
//! command that uses them. Runs anywhere: no config file is read.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Certificate, PublicKey};
use serde::Deserialize;

/// The whole exchange gives up after this.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Largest token file read (tokens are a few KiB).
const MAX_TOKEN_FILE: u64 = 64 << 10;

pub struct Login {
    pub api: String,
    pub token_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub ssh_port: Option<u16>,
}

#[derive(Deserialize)]
struct Issued {
    certificate: String,
    valid_before: u64,
    host_key: String,
    ssh_port: u16,
}

pub fn run(login: Login) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&login.api)
        .with_context(|| format!("--api {:?} is not a URL (https://HOST:PORT)", login.api))?;
    if url.scheme() != "https" {
        bail!("--api must be https:// (the token would cross the network in clear)");
    }
    let host = url
        .host_str()
        .context("--api names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let token = read_token(&login.token_file)?;
    let dir = match login.dir {
        Some(d) => d,
        None => PathBuf::from(std::env::var_os("HOME").context("no --dir and no $HOME")?)
            .join(".gatehouse"),
    };

    let key = crate::keyfile::generate().context("making a key pair")?;
    let public = key.public_key().to_openssh()?;
    let endpoint = url.join("/v1/ssh/certificate")?;
    let issued = request(&endpoint, login.ca_file.as_deref(), &token, &public)?;

    // Check what came back before writing it: a certificate for our key,
    // and a host key that parses.
    let cert = Certificate::from_openssh(issued.certificate.trim())
        .context("the appliance answered with something that is not an SSH certificate")?;
    if cert.public_key() != key.public_key().key_data() {
        bail!("the certificate is for another key");
    }
    let host_key = PublicKey::from_openssh(issued.host_key.trim())
        .context("the appliance's host key is not an OpenSSH public key")?;
    let port = login.ssh_port.unwrap_or(issued.ssh_port);

    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    let key_path = dir.join("id_ed25519");
    let cert_path = dir.join("id_ed25519-cert.pub");
    let hosts_path = dir.join("known_hosts");
    let key_text = key.to_openssh(LineEnding::LF)?;
    write(&key_path, key_text.as_bytes(), 0o600)?;
    write(
        &dir.join("id_ed25519.pub"),
        format!("{public}\n").as_bytes(),
        0o644,
    )?;
    write(
        &cert_path,
        format!("{}\n", issued.certificate.trim()).as_bytes(),
        0o644,
    )?;
    let known = format!("{} {}\n", known_host(&host, port), host_key.to_openssh()?);
    write(&hosts_path, known.as_bytes(), 0o644)?;

    let until = time::OffsetDateTime::from_unix_timestamp(issued.valid_before as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| issued.valid_before.to_string());
    eprintln!(
        "certificate for {} valid until {until}; written to {}",
        cert.key_id(),
        dir.display()
    );
    println!(
        "ssh -i {key} -o CertificateFile={cert} -o UserKnownHostsFile={hosts} -o IdentitiesOnly=yes -p {port} CONNECTION@{host}",
        key = shell_word(&key_path),
        cert = shell_word(&cert_path),
        hosts = shell_word(&hosts_path),
    );
    Ok(())
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {} (a JWT is text)", path.display()))?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(token)
}

fn request(
    endpoint: &reqwest::Url,
    ca_file: Option<&Path>,
    token: &str,
    public_key: &str,
) -> anyhow::Result<Issued> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca_file {
            let roots = crate::tls::load_roots(ca)
                .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", ca.display()))?;
            builder = builder.use_preconfigured_tls(crate::tls::verifying_client_config(roots));
        }
        let response = builder
            .build()?
            .post(endpoint.clone())
            .bearer_auth(token)
            .json(&serde_json::json!({ "public_key": public_key }))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{endpoint}: {}", crate::oidc::error_chain(&e)))?;
        let status = response.status();
        let body = response.bytes().await.context("reading the answer")?;
        if !status.is_success() {
            let why = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            bail!("the appliance refused: {status}: {why}");
        }
        serde_json::from_slice(&body).context("the appliance's answer is not the expected JSON")
    })
}

/// The `known_hosts` name OpenSSH looks up: `HOST` on port 22, else
/// `[HOST]:PORT`.
fn known_host(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// A path as one shell word.
fn shell_word(p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-~+=:,@".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Write `path` whole, with `mode`, replacing what was there.
fn write(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_names_follow_openssh() {
        assert_eq!(known_host("bastion", 22), "bastion");
        assert_eq!(known_host("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(known_host("::1", 2222), "[::1]:2222");
    }

    #[test]
    fn paths_are_quoted_for_the_shell_when_needed() {
        assert_eq!(
            shell_word(Path::new("/root/.gatehouse/id")),
            "/root/.gatehouse/id"
        );
        assert_eq!(
            shell_word(Path::new("/tmp/a b/it's")),
            "'/tmp/a b/it'\\''s'"
        );
    }
}
