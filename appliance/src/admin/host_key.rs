//! The admin endpoint's SSH host key: `data_dir/admin-ssh-host.key`, an
//! ed25519 key in OpenSSH format, created on first start (mode 0600). Its
//! fingerprint is logged so operators can pin it in `known_hosts`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};

const FILE: &str = "admin-ssh-host.key";

pub fn load_or_create(data_dir: &Path) -> anyhow::Result<PrivateKey> {
    let path = data_dir.join(FILE);
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(&text)
            .with_context(|| format!("{} is not an OpenSSH private key", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            aws_lc_rs::rand::fill(&mut seed)
                .map_err(|_| anyhow::anyhow!("no randomness for the SSH host key"))?;
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            let text = key
                .to_openssh(LineEnding::LF)
                .context("encoding the SSH host key")?;
            // Written aside and renamed into place: a crash mid-write never
            // leaves a half key the next start would refuse.
            let partial = path.with_extension("key.partial");
            let _ = std::fs::remove_file(&partial);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
                .with_context(|| format!("creating {}", path.display()))?;
            tracing::info!(path = %path.display(), "admin SSH host key created");
            key
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    tracing::info!(
        fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
        "admin SSH host key"
    );
    Ok(key)
}
