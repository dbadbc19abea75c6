//! `gatehouse recordings ...`: read the store, even while the daemon runs.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use gatehouse_actors::recording::{format_event, format_header};
use gatehouse_actors::store::seal::fingerprint;
use gatehouse_actors::store::{RecordingStore, SigningKey, Verdict};

use crate::config::LoadedConfig;

fn open(cfg: &LoadedConfig) -> anyhow::Result<RecordingStore> {
    let path = cfg.data_dir.join("recordings.redb");
    RecordingStore::open_read_only(&path).with_context(|| format!("opening {}", path.display()))
}

pub fn list(cfg: &LoadedConfig, json: bool) -> anyhow::Result<()> {
    let store = open(cfg)?;
    let mut out = std::io::stdout().lock();
    for h in store.sessions()? {
        if json {
            serde_json::to_writer(&mut out, &h)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", format_header(&h))?;
        }
    }
    Ok(())
}

pub fn show(cfg: &LoadedConfig, id: &str, json: bool) -> anyhow::Result<()> {
    let store = open(cfg)?;
    let id = store
        .resolve(id)
        .with_context(|| format!("no single recording matches {id:?}"))?;
    let header = store.header(id)?;
    let events = store.events(id)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "header": header }))?;
        writeln!(out)?;
        for e in &events {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        }
    } else {
        writeln!(out, "{}", format_header(&header))?;
        if let Some(r) = &header.reason {
            writeln!(out, "reason: {r}")?;
        }
        for e in &events {
            writeln!(out, "{}", format_event(e))?;
        }
    }
    Ok(())
}

/// The appliance's seal-signing key, created on first start; its public
/// half is written next to it (hex) so `verify` and auditors can use it.
pub fn signing_key(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let key = SigningKey::load_or_create(&data_dir.join(SIGNING_KEY))?;
    let public = hex::encode(key.public_key());
    let pub_path = data_dir.join(SIGNING_PUB);
    if std::fs::read_to_string(&pub_path)
        .ok()
        .as_deref()
        .map(str::trim)
        != Some(public.as_str())
    {
        std::fs::write(&pub_path, format!("{public}\n"))
            .with_context(|| format!("writing {}", pub_path.display()))?;
    }
    tracing::info!(
        public_key = %pub_path.display(),
        sha256 = %key.fingerprint(),
        "recording seals are signed with the appliance key"
    );
    Ok(key)
}

const SIGNING_KEY: &str = "recording-signing.key";
const SIGNING_PUB: &str = "recording-signing.pub";

/// `recordings verify`: recompute chains and check seals. Exits non-zero
/// when any recording is altered, truncated or carries a foreign seal;
/// unsealed (live or interrupted-before-seal) recordings are reported only.
pub fn verify(
    cfg: &LoadedConfig,
    id: Option<&str>,
    all: bool,
    public_key: Option<&Path>,
) -> anyhow::Result<bool> {
    let pub_path = public_key
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cfg.data_dir.join(SIGNING_PUB));
    let text = std::fs::read_to_string(&pub_path)
        .with_context(|| format!("reading the public key {}", pub_path.display()))?;
    let public =
        hex::decode(text.trim()).with_context(|| format!("{} is not hex", pub_path.display()))?;
    let store = open(cfg)?;
    let ids = match (id, all) {
        (Some(id), false) => vec![
            store
                .resolve(id)
                .with_context(|| format!("no single recording matches {id:?}"))?,
        ],
        (None, true) => store.sessions()?.into_iter().map(|h| h.id).collect(),
        _ => anyhow::bail!("give a recording id or --all"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "key sha256:{}", fingerprint(&public))?;
    let mut ok = true;
    for id in ids {
        let verdict = store.verify(id, &public)?;
        ok &= !matches!(
            verdict,
            Verdict::Altered { .. } | Verdict::Truncated { .. } | Verdict::BadSignature
        );
        writeln!(out, "{id}  {verdict}")?;
    }
    Ok(ok)
}
