//! A private CA for harness servers that speak HTTPS (the test issuer), made
//! with the `openssl` CLI the way an operator would make one, so the
//! gateway's `ca_file` handling is tested against certificates it did not
//! produce itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;

use crate::process::{DEFAULT_TIMEOUT, run_checked};

/// Days the generated certificates are valid: any test run fits.
const VALID_DAYS: &str = "7";

/// A CA and one server certificate for 127.0.0.1 (and `localhost`), in a
/// directory that lives as long as this value.
pub struct TestCa {
    dir: TempDir,
}

impl TestCa {
    /// Generates the CA and the server certificate (P-256 keys).
    pub fn generate(common_name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-test-ca-")
            .tempdir()
            .context("creating the CA directory")?;
        let d = dir.path();
        new_key_request(
            d,
            "ca.key",
            &[
                "-x509",
                "-out",
                "ca.crt",
                "-days",
                VALID_DAYS,
                "-subj",
                &format!("/CN={common_name} test CA"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )?;
        new_key_request(
            d,
            "server.key",
            &["-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        )?;
        fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
        )
        .context("writing the certificate extensions")?;
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                VALID_DAYS,
                "-extfile",
                "server.ext",
            ],
        )?;
        Ok(TestCa { dir })
    }

    /// The CA certificate (PEM): what the gateway's `ca_file` names.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server certificate (PEM), for 127.0.0.1 and `localhost`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The server certificate's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A rustls server config presenting the server certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        server_config(&self.server_cert(), &self.server_key())
    }
}

/// A rustls server config presenting the certificate chain in `cert_path`
/// with the key in `key_path` (PEM files, however they were made).
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("building the TLS server config")?;
    Ok(Arc::new(config))
}

/// `openssl req` with a fresh unencrypted P-256 key written to `key`.
fn new_key_request(dir: &Path, key: &str, args: &[&str]) -> Result<()> {
    let mut all = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
    ];
    all.extend_from_slice(args);
    openssl(dir, &all)
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir);
    run_checked(&mut cmd, DEFAULT_TIMEOUT).map(|_| ())
}
