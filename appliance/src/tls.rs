//! TLS material: the listener's certificate (configured, or generated on
//! first start as a small CA plus a server certificate), and client configs
//! for reaching targets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// Where generated material lives, under `data_dir`.
pub fn generated_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The listener's TLS config: the configured pair, or generated ones.
pub fn server_config(
    configured: Option<&(PathBuf, PathBuf)>,
    data_dir: &Path,
    names: &[String],
) -> anyhow::Result<rustls::ServerConfig> {
    let (cert_path, key_path) = match configured {
        Some((c, k)) => (c.clone(), k.clone()),
        None => ensure_generated(data_dir, names)?,
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(config)
}

/// Generate a CA and a server certificate once; later starts reuse them so
/// clients keep trusting the same CA.
fn ensure_generated(data_dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = generated_dir(data_dir);
    let ca_path = dir.join("ca.crt");
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    if !(ca_path.exists() && cert_path.exists() && key_path.exists()) {
        std::fs::create_dir_all(&dir)?;
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

        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, cert.pem() + &ca.pem())?;
        std::fs::write(&ca_path, ca.pem())?;
        // The CA key is not kept: nothing else should ever be signed by it.
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

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
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
