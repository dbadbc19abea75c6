//! The self-verifying archive: recordings leaving the box.
//!
//! A `.tar.zst` holding, for each session, the bytes exactly as stored
//! (so the seal's signature still verifies) plus a readable copy of the
//! events:
//!
//! ```text
//! manifest.json                       format, creation time, public key, SHA-256 of every file
//! manifest.sig                        ed25519 signature of manifest.json by the appliance key (hex)
//! recording-signing.pub               the appliance's ed25519 public key (hex)
//! sessions/<id>/header.json           stored header bytes
//! sessions/<id>/chunks/<n>.bin        stored chunk bytes, n zero-padded to 8 digits
//! sessions/<id>/seal.json             stored seal (absent while unsealed)
//! sessions/<id>/events.jsonl          one event per line, derived from the chunks
//! ```
//!
//! `verify_archive` checks the manifest's signature with the key the
//! auditor trusts (so no session can be dropped or added and no hash
//! rewritten), every member against the manifest, every chain and seal, and
//! that each `events.jsonl` is exactly what its chunks decode to. An
//! unsealed session (still live at export) cannot be proven complete and
//! fails verification. The key inside the archive proves nothing by itself.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::reader::{RawRecording, RecordingStore, StoreError};
use super::schema::Chunk;
use super::seal::{SigningKey, fingerprint};
use super::verify::Verdict;
use crate::recording::RecordingId;

pub const FORMAT: &str = "gatehouse-archive-v1";

/// No single archive member is read past this; recordings are chunked, so
/// only a forged archive has members this large.
const MAX_MEMBER: u64 = 1 << 30;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    created_at: i64,
    public_key: String,
    /// path → SHA-256 (hex) of every other member.
    files: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("archive I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("archive is malformed: {0}")]
    Malformed(String),
}

/// Readable events of one session, one JSON object per line.
fn events_jsonl(raw: &RawRecording) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (n, bytes) in &raw.chunks {
        let chunk = Chunk::decode(bytes).map_err(|e| format!("chunk {n}: {e}"))?;
        for e in chunk.events().map_err(|e| format!("chunk {n}: {e}"))? {
            serde_json::to_writer(&mut out, &e).map_err(|e| e.to_string())?;
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// Write the sessions `ids` as an archive to `out`.
pub fn write_archive(
    store: &RecordingStore,
    ids: &[RecordingId],
    key: &SigningKey,
    created_at: i64,
    out: impl Write,
) -> Result<(), ArchiveError> {
    let public_key = key.public_key();
    let encoder = zstd::Encoder::new(out, 3)?;
    let mut tar = tar::Builder::new(encoder);
    let mut files = BTreeMap::new();
    let mut add = |tar: &mut tar::Builder<_>, path: String, data: &[u8]| -> std::io::Result<()> {
        files.insert(path.clone(), hex::encode(Sha256::digest(data)));
        append(tar, &path, data)
    };
    let key_hex = hex::encode(&public_key);
    add(
        &mut tar,
        "recording-signing.pub".into(),
        format!("{key_hex}\n").as_bytes(),
    )?;
    for id in ids {
        let raw = store.raw(*id)?;
        let dir = format!("sessions/{id}");
        add(&mut tar, format!("{dir}/header.json"), &raw.header)?;
        for (n, bytes) in &raw.chunks {
            add(&mut tar, format!("{dir}/chunks/{n:08}.bin"), bytes)?;
        }
        if let Some(seal) = &raw.seal {
            add(&mut tar, format!("{dir}/seal.json"), seal)?;
        }
        // A chunk that no longer decodes is still exported byte for byte
        // (verify will name it); the readable copy just stops there.
        let events = events_jsonl(&raw).unwrap_or_default();
        add(&mut tar, format!("{dir}/events.jsonl"), &events)?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at,
        public_key: key_hex,
        files,
    };
    let manifest =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    append(&mut tar, "manifest.json", &manifest)?;
    let signature = hex::encode(key.sign_bytes(&manifest));
    append(&mut tar, "manifest.sig", signature.as_bytes())?;
    tar.into_inner()?.finish()?.flush()?;
    Ok(())
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o444);
    header.set_cksum();
    tar.append_data(&mut header, path, data)
}

/// What `verify --archive` found.
#[derive(Debug)]
pub struct ArchiveReport {
    /// SHA-256 of the public key the archive carries.
    pub key_fingerprint: String,
    /// Whether that key equals the one the caller trusts.
    pub key_matches: bool,
    /// Whether manifest.sig is the trusted key's signature of the manifest.
    pub manifest_signed: bool,
    pub sessions: Vec<(RecordingId, Verdict)>,
    /// Manifest or readable-copy mismatches.
    pub problems: Vec<String>,
}

impl ArchiveReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
            && self.key_matches
            && self.manifest_signed
            && self.sessions.iter().all(|(_, v)| v.is_ok())
    }
}

/// Verify an archive read from `input` against the key the caller trusts.
pub fn verify_archive(input: impl Read, key: &[u8]) -> Result<ArchiveReport, ArchiveError> {
    let decoder = zstd::Decoder::new(input)?;
    let mut tar = tar::Archive::new(decoder);
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in tar.entries()? {
        let entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if entry.size() > MAX_MEMBER {
            return Err(ArchiveError::Malformed(format!("{path} is too large")));
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.take(MAX_MEMBER).read_to_end(&mut data)?;
        members.insert(path, data);
    }
    let manifest_bytes = members
        .get("manifest.json")
        .ok_or_else(|| ArchiveError::Malformed("no manifest.json".into()))?;
    let manifest_signed = members
        .get("manifest.sig")
        .and_then(|sig| hex::decode(String::from_utf8_lossy(sig).trim()).ok())
        .is_some_and(|sig| {
            aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key)
                .verify(manifest_bytes, &sig)
                .is_ok()
        });
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| ArchiveError::Malformed(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(ArchiveError::Malformed(format!(
            "unknown format {:?}",
            manifest.format
        )));
    }
    let archive_key = hex::decode(&manifest.public_key)
        .map_err(|_| ArchiveError::Malformed("manifest public_key is not hex".into()))?;

    let mut problems = Vec::new();
    for (path, hash) in &manifest.files {
        match members.get(path) {
            None => problems.push(format!("{path} is listed in the manifest but missing")),
            Some(data) if hex::encode(Sha256::digest(data)) != *hash => {
                problems.push(format!("{path} does not match its manifest hash"))
            }
            Some(_) => {}
        }
    }
    for path in members.keys() {
        if path != "manifest.json" && path != "manifest.sig" && !manifest.files.contains_key(path) {
            problems.push(format!("{path} is not in the manifest"));
        }
    }

    // Regroup members by session.
    let mut raws: BTreeMap<String, RawRecording> = BTreeMap::new();
    let mut readable: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (path, data) in &members {
        let Some(rest) = path.strip_prefix("sessions/") else {
            continue;
        };
        let Some((id_text, file)) = rest.split_once('/') else {
            continue;
        };
        let Ok(id) = id_text.parse::<RecordingId>() else {
            problems.push(format!("{path}: not a recording id"));
            continue;
        };
        let raw = raws
            .entry(id_text.to_owned())
            .or_insert_with(|| RawRecording {
                id,
                header: Vec::new(),
                chunks: Vec::new(),
                seal: None,
            });
        match file {
            "header.json" => raw.header = data.clone(),
            "seal.json" => raw.seal = Some(data.clone()),
            "events.jsonl" => {
                readable.insert(id_text.to_owned(), data.clone());
            }
            _ => match file
                .strip_prefix("chunks/")
                .and_then(|f| f.strip_suffix(".bin"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                Some(n) => raw.chunks.push((n, data.clone())),
                None => problems.push(format!("{path}: unexpected member")),
            },
        }
    }
    let mut sessions = Vec::new();
    for (id_text, mut raw) in raws {
        raw.chunks.sort_by_key(|(n, _)| *n);
        let verdict = raw.verify(key);
        if let Ok(derived) = events_jsonl(&raw)
            && readable.get(&id_text) != Some(&derived)
        {
            problems.push(format!(
                "sessions/{id_text}/events.jsonl differs from the chunks"
            ));
        }
        sessions.push((raw.id, verdict));
    }
    Ok(ArchiveReport {
        key_fingerprint: fingerprint(&archive_key),
        key_matches: key == archive_key.as_slice(),
        manifest_signed,
        sessions,
        problems,
    })
}
