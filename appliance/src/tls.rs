//! TLS material: the listeners' certificate (configured, or generated on
//! first start as a small CA plus a server certificate; reloaded on
//! SIGHUP), and client configs for reaching targets and identity providers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// Where generated material lives, under `data_dir`.
pub fn generated_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The listeners' certificate, reloadable: the PostgreSQL listener and the
/// API present whatever was loaded last, so a renewed certificate (SIGHUP)
/// applies to new connections without a restart.
#[derive(Debug)]
pub struct ListenerCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: std::sync::RwLock<Arc<CertifiedKey>>,
}

impl ListenerCert {
    /// The configured pair, or generated ones (made on first start).
    pub fn load(
        configured: Option<&(PathBuf, PathBuf)>,
        data_dir: &Path,
        names: &[String],
    ) -> anyhow::Result<Arc<Self>> {
        let (cert_path, key_path) = match configured {
            Some((c, k)) => (c.clone(), k.clone()),
            None => ensure_generated(data_dir, names)?,
        };
        let current = certified_key(&cert_path, &key_path)?;
        Ok(Arc::new(ListenerCert {
            cert_path,
            key_path,
            current: std::sync::RwLock::new(current),
        }))
    }

    /// Read the files again; on any problem the old certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// A server config presenting this certificate, with `alpn` protocols.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

impl ResolvesServerCert for ListenerCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| anyhow::anyhow!("{} and {}: {e}", cert_path.display(), key_path.display()))?;
    Ok(Arc::new(certified))
}

/// Generate a CA and a server certificate once; later starts reuse them so
/// clients keep trusting the same CA.
///
/// The three files appear together or not at all: they are written and
/// synced in `tls.partial`, which is then renamed to `tls`. An appliance
/// that loses power during its first start (before the page cache reached
/// the disk) would otherwise come back with empty files and never start
/// again. An empty file can only come from such an interrupted write, so it
/// counts as missing.
fn ensure_generated(data_dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = generated_dir(data_dir);
    let ca_path = dir.join("ca.crt");
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    let present = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
    if !(present(&ca_path) && present(&cert_path) && present(&key_path)) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Gatehouse appliance CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca_params.not_after = rcgen::date_time_ymd(2046, 1, 1);
        let ca_key = rcgen::KeyPair::generate()?;
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().map_or("gatehouse", |n| n.as_str()),
        );
        params.not_after = rcgen::date_time_ymd(2046, 1, 1);
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;

        let partial = data_dir.join("tls.partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial)?;
        }
        std::fs::create_dir_all(&partial)?;
        write_synced(
            &partial.join("server.key"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_synced(
            &partial.join("server.crt"),
            (cert.pem() + &ca.pem()).as_bytes(),
            0o644,
        )?;
        write_synced(&partial.join("ca.crt"), ca.pem().as_bytes(), 0o644)?;
        // The CA key is not kept: nothing else should ever be signed by it.
        sync_dir(&partial)?;
        if dir.exists() {
            // Left incomplete by a version that wrote in place.
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(&partial, &dir)?;
        sync_dir(data_dir)?;
    }
    let ca_der = CertificateDer::from_pem_file(&ca_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ca_path.display()))?;
    tracing::info!(
        ca = %ca_path.display(),
        sha256 = %hex::encode(Sha256::digest(ca_der.as_ref())),
        "PostgreSQL listener uses the generated CA; clients verify with sslrootcert=<ca> sslmode=verify-full"
    );
    Ok((cert_path, key_path))
}

fn write_synced(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Makes the directory's entries (a new file, a rename) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(roots)
}

pub fn public_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

pub fn verifying_client_config(roots: RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// `tls = "require"`: encrypted, certificate not checked (like libpq's
/// sslmode=require). Handshake signatures are still verified.
pub fn no_verify_client_config() -> rustls::ClientConfig {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AnyCertificate(rustls::crypto::CryptoProvider);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    #[test]
    fn generated_material_is_reused_across_starts() {
        let data = tempfile::tempdir().unwrap();
        ensure_generated(data.path(), &names()).unwrap();
        let ca = std::fs::read(generated_dir(data.path()).join("ca.crt")).unwrap();
        ensure_generated(data.path(), &names()).unwrap();
        assert_eq!(
            std::fs::read(generated_dir(data.path()).join("ca.crt")).unwrap(),
            ca
        );
        assert!(!data.path().join("tls.partial").exists());
    }

    /// A power cut during the first start used to leave empty files that
    /// no later start could load: the daemon never came up again.
    #[test]
    fn files_emptied_by_a_power_cut_are_made_again() {
        let data = tempfile::tempdir().unwrap();
        let dir = generated_dir(data.path());
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["ca.crt", "server.crt", "server.key"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        // And an interrupted generation of the fixed kind.
        std::fs::create_dir_all(data.path().join("tls.partial")).unwrap();
        std::fs::write(data.path().join("tls.partial/ca.crt"), b"-----BEGIN").unwrap();

        ListenerCert::load(None, data.path(), &names()).unwrap();
        let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        assert!(!data.path().join("tls.partial").exists());
    }
}
