//! Seals: the signed statement that a recording is complete.
//!
//! When a session ends the recorder writes a seal over the chain's final
//! hash, the number of chunks, events and stored bytes, and the hash of the
//! final header, signed with the appliance's ed25519 key. Anyone holding
//! the public key can check that nothing was altered, removed or appended;
//! someone who recomputes the chain after tampering cannot produce the
//! signature.

use std::path::Path;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::recording::{Outcome, RecordingId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub id: RecordingId,
    pub outcome: Outcome,
    /// Hash of the last stored chunk (zeros when there is none).
    pub final_hash: [u8; 32],
    pub chunks: u32,
    pub events: u64,
    /// Sum of the stored chunk sizes.
    pub bytes: u64,
    /// SHA-256 of the header as stored.
    pub header_hash: [u8; 32],
    /// ed25519 over [`Seal::signed_bytes`].
    #[serde(with = "serde_bytes_hex")]
    pub signature: Vec<u8>,
}

impl Seal {
    /// The exact bytes the signature covers: a fixed layout, so a verifier
    /// in any language can rebuild them.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"gatehouse-seal-v1\0");
        out.extend_from_slice(&self.id.0.as_u128().to_be_bytes());
        out.extend_from_slice(self.outcome.as_str().as_bytes());
        out.push(0);
        out.extend_from_slice(&self.final_hash);
        out.extend_from_slice(&self.chunks.to_be_bytes());
        out.extend_from_slice(&self.events.to_be_bytes());
        out.extend_from_slice(&self.bytes.to_be_bytes());
        out.extend_from_slice(&self.header_hash);
        out
    }

    pub fn verify(&self, public_key: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&self.signed_bytes(), &self.signature)
            .is_ok()
    }
}

pub fn header_hash(stored_header: &[u8]) -> [u8; 32] {
    Sha256::digest(stored_header).into()
}

/// The appliance's signing key, kept as PKCS#8 in `data_dir`.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {detail}")]
    File { path: String, detail: String },
}

impl SigningKey {
    /// Load the key, or create it on first start (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
        let err = |detail: String| KeyError::File {
            path: path.display().to_string(),
            detail,
        };
        let pkcs8 = if path.exists() {
            std::fs::read(path).map_err(|e| err(e.to_string()))?
        } else {
            let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                .map_err(|_| err("key generation failed".into()))?;
            write_private(path, doc.as_ref()).map_err(|e| err(e.to_string()))?;
            doc.as_ref().to_vec()
        };
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| err(e.to_string()))?;
        Ok(SigningKey { pair })
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// SHA-256 of the public key, as logged and printed by `verify`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key())
    }

    /// Sign arbitrary bytes (an archive manifest) with the appliance key.
    pub fn sign_bytes(&self, data: &[u8]) -> Vec<u8> {
        self.pair.sign(data).as_ref().to_vec()
    }

    pub fn sign(&self, seal: &mut Seal) {
        seal.signature = self.pair.sign(&seal.signed_bytes()).as_ref().to_vec();
    }
}

pub fn fingerprint(public_key: &[u8]) -> String {
    hex::encode(Sha256::digest(public_key))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

mod serde_bytes_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_verifies_only_unchanged_and_with_its_key() {
        let dir = std::env::temp_dir().join(format!("gh-seal-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SigningKey::load_or_create(&dir.join("k")).unwrap();
        let again = SigningKey::load_or_create(&dir.join("k")).unwrap();
        assert_eq!(key.public_key(), again.public_key(), "the key persists");
        let mut seal = Seal {
            id: RecordingId::new(),
            outcome: Outcome::Closed,
            final_hash: [1; 32],
            chunks: 3,
            events: 40,
            bytes: 900,
            header_hash: [2; 32],
            signature: Vec::new(),
        };
        key.sign(&mut seal);
        assert!(seal.verify(&key.public_key()));
        let mut truncated = seal.clone();
        truncated.chunks = 2;
        assert!(!truncated.verify(&key.public_key()));
        let other = SigningKey::load_or_create(&dir.join("other")).unwrap();
        assert!(!seal.verify(&other.public_key()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
