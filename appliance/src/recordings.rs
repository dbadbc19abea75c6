//! `gatehouse recordings ...`: read the store, even while the daemon runs.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use gatehouse_actors::recording::{
    RecordingId, SessionHeader, format_event, format_header, format_time, write_asciicast,
};
use gatehouse_actors::store::listing::Window;
use gatehouse_actors::store::seal::fingerprint;
use gatehouse_actors::store::{RecordingStore, SigningKey, Verdict};

use crate::config::LoadedConfig;

pub fn open(cfg: &LoadedConfig) -> anyhow::Result<RecordingStore> {
    let path = cfg.data_dir.join("recordings.redb");
    RecordingStore::open_read_only(&path).with_context(|| format!("opening {}", path.display()))
}

pub fn list(
    cfg: &LoadedConfig,
    json: bool,
    since: Option<&str>,
    until: Option<&str>,
    claims: &[String],
) -> anyhow::Result<()> {
    let filters = claims
        .iter()
        .map(|c| {
            c.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .with_context(|| format!("--claim {c:?}: write NAME=VALUE (VALUE may use *)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = open(cfg)?;
    let mut out = std::io::stdout().lock();
    for h in started_between(&store, since, until)? {
        if !granted_by(&h, &filters) {
            continue;
        }
        if json {
            serde_json::to_writer(&mut out, &h)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", format_header(&h))?;
        }
    }
    Ok(())
}

/// Whether every `(claim, pattern)` matches a claim that granted the
/// session its connection, as its header recorded it.
fn granted_by(h: &SessionHeader, filters: &[(&str, &str)]) -> bool {
    filters.iter().all(|(name, pattern)| {
        h.claims
            .get(*name)
            .is_some_and(|v| gatehouse_actors::access::value_matches(v, pattern))
    })
}

pub fn show(cfg: &LoadedConfig, id: &str, json: bool) -> anyhow::Result<()> {
    let store = open(cfg)?;
    let id = store
        .resolve(id)
        .with_context(|| format!("no single recording matches {id:?}"))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        write_jsonl(&store, id, &mut out)?;
    } else {
        let header = store.header(id)?;
        let events = store.events(id)?;
        writeln!(out, "{}", format_header(&header))?;
        if !header.roles.is_empty() {
            let claims: Vec<String> = header
                .claims
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            writeln!(
                out,
                "{}",
                gatehouse_actors::recording::clean(&format!(
                    "granted by: {} ({})",
                    header.roles.join(", "),
                    if claims.is_empty() {
                        "groups or issuer".to_owned()
                    } else {
                        claims.join(", ")
                    }
                ))
            )?;
        }
        if let Some(r) = &header.reason {
            writeln!(out, "reason: {r}")?;
        }
        for e in &events {
            writeln!(out, "{}", format_event(e))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A session as JSON Lines: `{"header": …}`, then one event per line.
pub fn write_jsonl(
    store: &RecordingStore,
    id: RecordingId,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let header = store.header(id)?;
    serde_json::to_writer(&mut out, &serde_json::json!({ "header": header }))?;
    writeln!(out)?;
    for e in &store.events(id)? {
        serde_json::to_writer(&mut out, e)?;
        writeln!(out)?;
    }
    Ok(())
}

/// A session as an asciicast v2 replay.
pub fn write_cast(store: &RecordingStore, id: RecordingId, out: impl Write) -> anyhow::Result<()> {
    let header = store.header(id)?;
    let events = store.events(id)?;
    write_asciicast(&header, &events, out)?;
    Ok(())
}

/// A session's header and seal, with the verdict of recomputing its chain
/// against `public_key` now, as one JSON document.
pub fn write_summary(
    store: &RecordingStore,
    id: RecordingId,
    public_key: &[u8],
    mut out: impl Write,
) -> anyhow::Result<()> {
    let raw = store.raw(id)?;
    let header: serde_json::Value = serde_json::from_slice(&raw.header)?;
    let seal = match &raw.seal {
        Some(bytes) => serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null),
        None => serde_json::Value::Null,
    };
    serde_json::to_writer_pretty(
        &mut out,
        &serde_json::json!({
            "header": header,
            "seal": seal,
            "verdict": raw.verify(public_key).to_string(),
            "public_key": hex::encode(public_key),
            "key_fingerprint": format!("sha256:{}", fingerprint(public_key)),
        }),
    )?;
    writeln!(out)?;
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

/// A public key file as `signing_key` writes it: hex on one line.
/// The appliance's own public key, as the daemon wrote it.
pub fn stored_public_key(cfg: &LoadedConfig) -> anyhow::Result<Vec<u8>> {
    read_public_key(&cfg.data_dir.join(SIGNING_PUB))
}

fn read_public_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))
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
    let public = read_public_key(&pub_path)?;
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// One session: its header, then one event per line.
    Jsonl,
    /// One session as an asciicast v2 replay (plays in asciinema).
    Asciicast,
    /// Any number of sessions as a self-verifying .tar.zst.
    Archive,
}

/// Which sessions an export covers.
pub struct Selection<'a> {
    pub id: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

/// `recordings export`: to stdout, streamed.
pub fn export(cfg: &LoadedConfig, what: Selection<'_>, format: ExportFormat) -> anyhow::Result<()> {
    let store = open(cfg)?;
    let headers = match (what.id, what.since, what.until) {
        (Some(id), None, None) => {
            let id = store
                .resolve(id)
                .with_context(|| format!("no single recording matches {id:?}"))?;
            vec![store.header(id)?]
        }
        (None, since, until) => started_between(&store, since, until)?,
        _ => anyhow::bail!("give a recording id, or --since/--until"),
    };
    let ids: Vec<RecordingId> = headers.iter().map(|h| h.id).collect();
    match format {
        ExportFormat::Jsonl | ExportFormat::Asciicast => {
            let [id] = ids.as_slice() else {
                anyhow::bail!(
                    "--format jsonl and asciicast export one recording; use --format archive for several"
                );
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match format {
                ExportFormat::Jsonl => write_jsonl(&store, *id, &mut out)?,
                _ => write_cast(&store, *id, &mut out)?,
            }
            out.flush()?;
            Ok(())
        }
        ExportFormat::Archive => {
            let key_path = cfg.data_dir.join(SIGNING_KEY);
            if !key_path.exists() {
                anyhow::bail!(
                    "no signing key at {} (has the daemon run?)",
                    key_path.display()
                );
            }
            let key = SigningKey::load_or_create(&key_path)?;
            // A live session has no seal yet, so it could not verify: it is
            // archived once it has ended.
            let (ended, live): (Vec<_>, Vec<_>) = headers.iter().partition(|h| h.outcome.is_some());
            if !live.is_empty() {
                eprintln!(
                    "left out {} live sessions: they are archived once they end",
                    live.len()
                );
            }
            let ids: Vec<RecordingId> = ended.iter().map(|h| h.id).collect();
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            gatehouse_actors::store::archive::write_archive(
                &store,
                &ids,
                &key,
                gatehouse_actors::recorder::now_micros(),
                out,
            )?;
            eprintln!("exported {} recordings", ids.len());
            Ok(())
        }
    }
}

/// The sessions that started within `--since` (inclusive) and `--until`,
/// oldest first.
fn started_between(
    store: &RecordingStore,
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<Vec<SessionHeader>> {
    Ok(store.sessions_between(Window {
        from: since.map(parse_point).transpose()?,
        to: until.map(parse_point).transpose()?,
    })?)
}

/// `--since`/`--until`: a date (`2026-11-01`, UTC midnight), an RFC 3339
/// time, or an age (`1d`, `12h`) counted back from now. Unix microseconds.
pub fn parse_point(text: &str) -> anyhow::Result<i64> {
    if let Ok(age) = crate::config::parse_duration(text) {
        return i64::try_from(age.as_micros())
            .ok()
            .and_then(|m| gatehouse_actors::recorder::now_micros().checked_sub(m))
            .with_context(|| format!("{text:?} reaches before any recording"));
    }
    let with_time = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    let t = time::OffsetDateTime::parse(&with_time, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("{text:?} is not a date (2026-11-01), a time (RFC 3339) or an age (1d)")
        })?;
    Ok((t.unix_timestamp_nanos() / 1000) as i64)
}

/// `recordings verify --archive FILE --public-key KEY`: works on any
/// machine, without config or store. The key must come from the auditor's
/// own copy of the appliance's public key: the one inside the archive
/// proves nothing by itself. Exit status as for stored recordings.
pub fn verify_archive(path: &Path, public_key: Option<&Path>) -> anyhow::Result<bool> {
    let Some(key_path) = public_key else {
        anyhow::bail!(
            "verify --archive needs --public-key: the appliance's recording-signing.pub, from a copy you trust"
        );
    };
    let trusted = read_public_key(key_path)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let report =
        gatehouse_actors::store::archive::verify_archive(std::io::BufReader::new(file), &trusted)?;
    let mut out = std::io::stdout().lock();
    if report.key_matches {
        writeln!(
            out,
            "key sha256:{} (matches --public-key)",
            report.key_fingerprint
        )?;
    } else {
        writeln!(
            out,
            "KEY MISMATCH: the archive carries sha256:{}, not the key given",
            report.key_fingerprint
        )?;
    }
    if !report.manifest_signed {
        writeln!(
            out,
            "MANIFEST NOT SIGNED by the given key: sessions may have been added or removed"
        )?;
    }
    for (id, verdict) in &report.sessions {
        writeln!(out, "{id}  {verdict}")?;
    }
    for p in &report.problems {
        writeln!(out, "PROBLEM: {p}")?;
    }
    Ok(report.is_ok())
}

pub fn status(cfg: &LoadedConfig) -> anyhow::Result<()> {
    match crate::control::request(&cfg.data_dir, &crate::control::Request::Status)? {
        crate::control::Response::Status {
            live_sessions,
            recorder,
        } => {
            println!("live sessions:      {live_sessions}");
            println!("open recordings:    {}", recorder.open_sessions);
            println!("pending events:     {}", recorder.pending_events);
            println!(
                "last flush:         {}",
                recorder.last_flush.map_or("never".into(), format_time)
            );
            println!("commits:            {}", recorder.commits);
            println!(
                "strict log appends: {} ({} bytes not yet folded)",
                recorder.log_appends, recorder.log_bytes
            );
            println!("failed flushes:     {}", recorder.failed_flushes);
            if let Some((at, why)) = recorder.last_error {
                println!("last failure:       {} {why}", format_time(at));
            }
            Ok(())
        }
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

pub fn purge(cfg: &LoadedConfig, before: &str) -> anyhow::Result<()> {
    let ended_before = parse_point(before)?;
    match crate::control::request(
        &cfg.data_dir,
        &crate::control::Request::Purge { ended_before },
    )? {
        crate::control::Response::Purged(record) => {
            println!(
                "purged {} recordings ({} bytes) that ended before {}",
                record.sessions.len(),
                record.bytes,
                format_time(ended_before)
            );
            Ok(())
        }
        crate::control::Response::Error { message } => anyhow::bail!("{message}"),
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

pub fn purges(cfg: &LoadedConfig) -> anyhow::Result<()> {
    let store = open(cfg)?;
    let mut out = std::io::stdout().lock();
    for p in store.purges()? {
        writeln!(
            out,
            "{}  by {:<24} {} recordings, {} bytes{}{}",
            format_time(p.at),
            p.by,
            p.sessions.len(),
            p.bytes,
            p.ended_before.map_or(String::new(), |t| format!(
                ", ended before {}",
                format_time(t)
            )),
            p.max_bytes
                .map_or(String::new(), |m| format!(", over {m} bytes")),
        )?;
    }
    Ok(())
}
