//! `gatehouse recordings ...`: read the store, even while the daemon runs.

use std::io::Write;

use anyhow::Context as _;
use gatehouse_actors::recording::{format_event, format_header};
use gatehouse_actors::store::RecordingStore;

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
