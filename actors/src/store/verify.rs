//! Recomputing a recording's chain and checking it against its seal.

use super::schema::{Chunk, chain_hash};
use super::seal::{Seal, header_hash};

/// What `recordings verify` concludes about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Chain intact, seal matches and its signature verifies.
    Intact { chunks: u32, events: u64 },
    /// No seal yet: the session is live, or the appliance stopped before it
    /// could seal it. The chain itself was intact up to `chunks`.
    Unsealed { chunks: u32, events: u64 },
    /// A stored chunk does not match the chain: changed, reordered or
    /// replaced. `chunk` is the first bad position.
    Altered { chunk: u32, detail: String },
    /// Chunks the seal counts are missing from the end.
    Truncated { sealed: u32, found: u32 },
    /// The chain matches the seal's numbers but the signature does not
    /// verify with the appliance key: the seal was forged or re-made.
    BadSignature,
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Intact { .. })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Intact { chunks, events } => {
                write!(f, "ok ({chunks} chunks, {events} events, seal verified)")
            }
            Verdict::Unsealed { chunks, events } => {
                write!(
                    f,
                    "unsealed ({chunks} chunks, {events} events; live or interrupted)"
                )
            }
            Verdict::Altered { chunk, detail } => write!(f, "ALTERED at chunk {chunk}: {detail}"),
            Verdict::Truncated { sealed, found } => {
                write!(f, "TRUNCATED: sealed with {sealed} chunks, {found} present")
            }
            Verdict::BadSignature => write!(f, "BAD SIGNATURE: the seal is not the appliance's"),
        }
    }
}

/// The chain state of a run of chunks, as the recorder also needs it to
/// seal a session it finds unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainState {
    pub chunks: u32,
    pub events: u64,
    pub bytes: u64,
    pub last_hash: [u8; 32],
}

/// Walk stored chunks `(number, bytes)` in key order and check the chain.
pub fn walk_chain(chunks: &[(u32, Vec<u8>)]) -> Result<ChainState, (u32, String)> {
    let mut state = ChainState::default();
    for (n, stored) in chunks {
        if *n != state.chunks {
            return Err((state.chunks, format!("chunk {} is missing", state.chunks)));
        }
        let chunk = Chunk::decode(stored).map_err(|e| (*n, format!("unreadable: {e}")))?;
        if chunk.prev_hash != state.last_hash {
            return Err((
                *n,
                "does not follow the previous chunk (hash mismatch)".into(),
            ));
        }
        let events = chunk
            .events()
            .map_err(|e| (*n, format!("events unreadable: {e}")))?;
        if events.len() as u64 != u64::from(chunk.count) || chunk.first_seq != state.events {
            return Err((*n, "event numbering does not continue the chain".into()));
        }
        for (i, e) in events.iter().enumerate() {
            if e.seq != state.events + i as u64 {
                return Err((*n, format!("event {} is out of sequence", e.seq)));
            }
        }
        state.chunks += 1;
        state.events += events.len() as u64;
        state.bytes += stored.len() as u64;
        state.last_hash = chain_hash(stored);
    }
    Ok(state)
}

/// Verify one session from its stored header, chunks and seal. `id` is
/// the key the session is stored (or archived) under: the header and the
/// seal must both name it, so one session's record cannot stand in for
/// another's.
pub fn verify(
    id: crate::recording::RecordingId,
    stored_header: &[u8],
    chunks: &[(u32, Vec<u8>)],
    seal: Option<&Seal>,
    public_key: &[u8],
) -> Verdict {
    match serde_json::from_slice::<crate::recording::SessionHeader>(stored_header) {
        Ok(h) if h.id == id => {}
        Ok(_) => {
            return Verdict::Altered {
                chunk: 0,
                detail: "the header belongs to another recording".into(),
            };
        }
        Err(e) => {
            return Verdict::Altered {
                chunk: 0,
                detail: format!("the header is unreadable: {e}"),
            };
        }
    }
    if seal.is_some_and(|s| s.id != id) {
        return Verdict::Altered {
            chunk: 0,
            detail: "the seal belongs to another recording".into(),
        };
    }
    let state = match walk_chain(chunks) {
        Ok(s) => s,
        Err((chunk, detail)) => return Verdict::Altered { chunk, detail },
    };
    let Some(seal) = seal else {
        return Verdict::Unsealed {
            chunks: state.chunks,
            events: state.events,
        };
    };
    if state.chunks < seal.chunks {
        return Verdict::Truncated {
            sealed: seal.chunks,
            found: state.chunks,
        };
    }
    if state.chunks > seal.chunks {
        return Verdict::Altered {
            chunk: seal.chunks,
            detail: "chunks were added after the seal".into(),
        };
    }
    if state.last_hash != seal.final_hash
        || state.events != seal.events
        || state.bytes != seal.bytes
    {
        return Verdict::Altered {
            chunk: state.chunks.saturating_sub(1),
            detail: "the chain does not match the seal".into(),
        };
    }
    if header_hash(stored_header) != seal.header_hash {
        return Verdict::Altered {
            chunk: 0,
            detail: "the session header was changed after the seal".into(),
        };
    }
    if !seal.verify(public_key) {
        return Verdict::BadSignature;
    }
    Verdict::Intact {
        chunks: state.chunks,
        events: state.events,
    }
}
