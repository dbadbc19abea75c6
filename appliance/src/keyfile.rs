//! The appliance's own ed25519 keys in `data_dir`, in OpenSSH format,
//! created on first start (mode 0600) and reused after: the admin
//! endpoint's host key (`admin-ssh-host.key`) today, and every other SSH key
//! the appliance owns. Each key's fingerprint is logged at start so
//! operators can pin it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};

/// The admin SSH endpoint's host key.
pub const ADMIN_HOST_KEY: &str = "admin-ssh-host.key";
/// The agent-facing SSH listener's host key (`[listen] ssh`); the API
/// hands out its public half so `gatehouse login` can pin it.
pub const SSH_HOST_KEY: &str = "ssh-host.key";
/// The user CA that signs agents' SSH certificates; its public half is what
/// the SSH listener trusts at login.
pub const SSH_USER_CA: &str = "ssh-user-ca.key";

/// A fresh ed25519 key from the system's randomness.
pub fn generate() -> anyhow::Result<PrivateKey> {
    let mut seed = [0u8; 32];
    aws_lc_rs::rand::fill(&mut seed).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

/// Load `data_dir/file`, or create it. `what` names the key in logs and
/// errors ("admin SSH host key").
pub fn load_or_create(data_dir: &Path, file: &str, what: &str) -> anyhow::Result<PrivateKey> {
    let path = data_dir.join(file);
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(&text)
            .with_context(|| format!("{} is not an OpenSSH private key", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate().with_context(|| format!("making the {what}"))?;
            let text = key
                .to_openssh(LineEnding::LF)
                .with_context(|| format!("encoding the {what}"))?;
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
            tracing::info!(path = %path.display(), "{what} created");
            key
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    tracing::info!(
        fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
        "{what}"
    );
    Ok(key)
}
