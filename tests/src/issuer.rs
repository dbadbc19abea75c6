//! A stand-in OIDC issuer on loopback, over HTTP or over HTTPS with its own
//! CA.
//!
//! The gateway only ever talks to an issuer in two ways — discovery
//! (`/.well-known/openid-configuration`) and the key set (`/jwks`) — so this
//! serves exactly those, under an optional path (`/realms/acme`, as
//! Keycloak does), one thread per connection, with `Connection: close` on
//! every answer. What a test needs beyond a real issuer is control and
//! observation: which keys are published can change at runtime
//! ([`Issuer::publish_rsa2`], [`Issuer::retire`]), the issuer can be made to
//! fail ([`Issuer::set_failing`]) or misbehave ([`Issuer::set_discovery_issuer`],
//! [`Issuer::set_discovery_redirect`]), and [`Issuer::jwks_fetches`] counts
//! key set downloads so tests can assert refresh rate limiting. With
//! [`IssuerOptions::tls`] it serves HTTPS with a certificate from a private
//! CA ([`Issuer::ca_cert`]), as an in-house identity provider does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::keys::{KeySet, SigningKey};
use crate::tls::TestCa;
use crate::token::{Claims, Minter};

/// How long a client may take to send its request before we hang up, so a
/// stuck client cannot pin a handler thread for the rest of the test run.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests with more header bytes than this are refused; discovery
/// clients send a few hundred.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// How often the accept loop checks whether the issuer was dropped.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// Options for [`Issuer::start_with`].
#[derive(Clone, Debug, Default)]
pub struct IssuerOptions {
    /// Persist keys here (and reuse existing ones); `None` generates fresh
    /// keys that live only as long as the issuer.
    pub key_dir: Option<PathBuf>,
    /// The loopback port to listen on; 0 picks a free one.
    pub port: u16,
    /// Serve HTTPS with a certificate from a CA made for this issuer.
    pub tls: bool,
    /// The issuer URL's path (`/realms/acme`); empty for none.
    pub path: String,
    /// Serve HTTPS with this certificate chain and key (PEM files) instead
    /// of a CA made for the issuer: for a test that names the issuer by a
    /// host name its own CA signed.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// The URL the issuer is known by (`https://idp.example:443`), when
    /// clients reach it through a forward rather than at 127.0.0.1:PORT;
    /// `path` is appended.
    pub public_url: Option<String>,
}

/// A running loopback issuer. Dropping it stops the server.
pub struct Issuer {
    port: u16,
    minter: Minter,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    ca: Option<TestCa>,
}

/// State shared with the server thread.
struct Shared {
    url: String,
    /// The URL's path, stripped from requests before routing.
    path: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Served as the discovery document's `issuer` instead of `url`.
    discovery_issuer: Mutex<Option<String>>,
    /// Discovery answers 302 to this location.
    discovery_redirect: Mutex<Option<String>>,
    keys: Arc<KeySet>,
    published: Mutex<Vec<SigningKey>>,
    failing: AtomicBool,
    stop: AtomicBool,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

impl Issuer {
    /// An issuer with fresh keys on a free port, publishing `rsa-1` and
    /// `ec-1`.
    pub fn start() -> Result<Self> {
        Self::start_with(IssuerOptions::default())
    }

    /// An issuer whose keys persist in `dir`, for the demo: tokens minted
    /// later by `gatehouse-dev-issuer mint` verify against it.
    pub fn start_with_dir(dir: &Path) -> Result<Self> {
        Self::start_with(IssuerOptions {
            key_dir: Some(dir.to_path_buf()),
            ..IssuerOptions::default()
        })
    }

    /// An issuer with the given options.
    pub fn start_with(options: IssuerOptions) -> Result<Self> {
        let keys = match &options.key_dir {
            Some(dir) => KeySet::load_or_generate(dir)?,
            None => KeySet::generate()?,
        };
        let keys = Arc::new(keys);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
            .with_context(|| format!("binding the issuer to 127.0.0.1:{}", options.port))?;
        let port = listener
            .local_addr()
            .context("reading the issuer address")?
            .port();
        listener
            .set_nonblocking(true)
            .context("making the issuer listener non-blocking")?;
        let ca = if options.tls && options.cert.is_none() {
            Some(TestCa::generate("issuer")?)
        } else {
            None
        };
        let tls = match &options.cert {
            Some((cert, key)) => Some(crate::tls::server_config(cert, key)?),
            None => ca.as_ref().map(TestCa::server_config).transpose()?,
        };
        let path = options.path.trim_end_matches('/').to_owned();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let origin = match &options.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{scheme}://127.0.0.1:{port}"),
        };
        let url = format!("{origin}{path}");

        let shared = Arc::new(Shared {
            url: url.clone(),
            path,
            tls,
            discovery_issuer: Mutex::new(None),
            discovery_redirect: Mutex::new(None),
            keys: keys.clone(),
            published: Mutex::new(vec![SigningKey::Rsa1, SigningKey::Ec1]),
            failing: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
        });
        let accept_thread = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("issuer-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .context("spawning the issuer thread")?
        };
        Ok(Issuer {
            port,
            minter: Minter::new(keys, url),
            shared,
            accept_thread: Some(accept_thread),
            ca,
        })
    }

    /// An HTTPS issuer with its own CA (see [`Issuer::ca_cert`]) at `path`.
    pub fn start_https(path: &str) -> Result<Self> {
        Self::start_with(IssuerOptions {
            tls: true,
            path: path.into(),
            ..IssuerOptions::default()
        })
    }

    /// The CA that signed an HTTPS issuer's certificate (PEM), for the
    /// gateway's `ca_file`; `None` for plain HTTP.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(TestCa::ca_cert)
    }

    /// Makes discovery name another `issuer` than the URL it is served at
    /// (`None` restores the truth).
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        *lock(&self.shared.discovery_issuer) = issuer.map(str::to_owned);
    }

    /// Makes discovery answer `302 Found` to `location` (`None` restores it).
    pub fn set_discovery_redirect(&self, location: Option<&str>) {
        *lock(&self.shared.discovery_redirect) = location.map(str::to_owned);
    }

    /// Writes the key set as currently published to `path`, for a gateway
    /// configured with `jwks_file`.
    pub fn write_jwks(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.jwks().to_string())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// `http://127.0.0.1:PORT[/path]` (or `https://`), the `issuer` value
    /// for config and tokens.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The loopback port served on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The token minter bound to this issuer's URL and keys.
    pub fn minter(&self) -> &Minter {
        &self.minter
    }

    /// A correctly signed token; see [`Minter::mint`].
    pub fn mint(&self, claims: &Claims) -> Result<String> {
        self.minter.mint(claims)
    }

    /// See [`Minter::token_alg_none`].
    pub fn token_alg_none(&self, claims: &Claims) -> Result<String> {
        self.minter.token_alg_none(claims)
    }

    /// See [`Minter::token_hs256_with_public_key`].
    pub fn token_hs256_with_public_key(&self, claims: &Claims) -> Result<String> {
        self.minter.token_hs256_with_public_key(claims)
    }

    /// See [`Minter::token_bad_signature`].
    pub fn token_bad_signature(&self, claims: &Claims) -> Result<String> {
        self.minter.token_bad_signature(claims)
    }

    /// See [`Minter::token_wrong_key`].
    pub fn token_wrong_key(&self, claims: &Claims) -> Result<String> {
        self.minter.token_wrong_key(claims)
    }

    /// Adds `rsa-2` to the served key set.
    pub fn publish_rsa2(&self) {
        self.publish(SigningKey::Rsa2);
    }

    /// Adds a key to the served key set (the rogue key too, if a test wants
    /// to show that publishing is what makes it trusted).
    pub fn publish(&self, key: SigningKey) {
        let mut published = self.published();
        if !published.contains(&key) {
            published.push(key);
        }
    }

    /// Removes a key from the served key set.
    pub fn retire(&self, key: SigningKey) {
        self.published().retain(|k| *k != key);
    }

    /// A key rotation: publishes `rsa-2` and retires `rsa-1`.
    pub fn rotate(&self) {
        self.publish_rsa2();
        self.retire(SigningKey::Rsa1);
    }

    /// The keys currently served.
    pub fn published_keys(&self) -> Vec<SigningKey> {
        self.published().clone()
    }

    /// Makes every request answer `503`, as an issuer outage would.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// How many `/jwks` requests were answered so far (failing ones too).
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many discovery requests were answered so far.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// The key set document as currently served.
    pub fn jwks(&self) -> Value {
        self.shared.jwks()
    }

    /// The discovery document.
    pub fn discovery(&self) -> Value {
        self.shared.discovery()
    }

    fn published(&self) -> MutexGuard<'_, Vec<SigningKey>> {
        self.shared.published()
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            // A panic in the server thread has already failed whatever test
            // caused it; nothing more to report here.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn published(&self) -> MutexGuard<'_, Vec<SigningKey>> {
        // The list stays consistent even if a holder panicked: every
        // mutation is a single push or retain.
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .published()
            .iter()
            .map(|k| self.keys.get(*k).jwk.clone())
            .collect();
        json!({ "keys": keys })
    }

    fn discovery(&self) -> Value {
        let issuer = lock(&self.discovery_issuer)
            .clone()
            .unwrap_or_else(|| self.url.clone());
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{}/jwks", self.url),
            // Not served: the gateway validates tokens, it never runs a flow.
            "authorization_endpoint": format!("{}/authorize", self.url),
            "token_endpoint": format!("{}/token", self.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        })
    }

    /// Status, extra header and body for one request path.
    fn respond(&self, method: &str, path: &str) -> (u16, &'static str, String, Value) {
        let path = path.split('?').next().unwrap_or(path);
        let Some(path) = path.strip_prefix(self.path.as_str()) else {
            return (
                404,
                "Not Found",
                String::new(),
                json!({ "error": "not found" }),
            );
        };
        let counter = match path {
            "/jwks" => Some(&self.jwks_fetches),
            "/.well-known/openid-configuration" => Some(&self.discovery_fetches),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        if self.failing.load(Ordering::SeqCst) {
            return (
                503,
                "Service Unavailable",
                String::new(),
                json!({ "error": "issuer is failing (test)" }),
            );
        }
        if method != "GET" {
            return (
                405,
                "Method Not Allowed",
                String::new(),
                json!({ "error": "only GET" }),
            );
        }
        match path {
            "/jwks" => (200, "OK", String::new(), self.jwks()),
            "/.well-known/openid-configuration" => match lock(&self.discovery_redirect).clone() {
                Some(location) => (302, "Found", format!("Location: {location}\r\n"), json!({})),
                None => (200, "OK", String::new(), self.discovery()),
            },
            _ => (
                404,
                "Not Found",
                String::new(),
                json!({ "error": "not found" }),
            ),
        }
    }
}

/// A mutex whose value stays whole even if a holder panicked: every
/// mutation is a single assignment.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                // One thread per connection: a client that connects and says
                // nothing must not stall discovery for the gateway.
                let _ = thread::Builder::new()
                    .name("issuer-conn".into())
                    .spawn(move || serve_connection(stream, &shared));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            // Transient accept errors (a client resetting early) are not
            // the test's concern; keep serving.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    // I/O errors here mean the client went away; there is no one to tell.
    let _ = try_serve_connection(stream, shared);
}

fn try_serve_connection(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_READ_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_READ_TIMEOUT))?;
    match &shared.tls {
        None => answer(stream, shared),
        Some(config) => {
            let conn =
                rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, stream);
            answer(&mut tls, shared)?;
            tls.conn.send_close_notify();
            tls.flush()
        }
    }
}

/// Reads one request from `stream` and writes the answer.
fn answer<S: Read + Write>(stream: S, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read and discard headers up to the blank line; requests have no body.
    let mut head_bytes = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        head_bytes += n;
        if n == 0 || line == "\r\n" || line == "\n" || head_bytes > MAX_REQUEST_HEAD_BYTES {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (status, reason, extra, body) = match (parts.next(), parts.next()) {
        (Some(method), Some(path)) if head_bytes <= MAX_REQUEST_HEAD_BYTES => {
            shared.respond(method, path)
        }
        _ => (
            400,
            "Bad Request",
            String::new(),
            json!({ "error": "bad request" }),
        ),
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let stream = reader.get_mut();
    stream.write_all(response.as_bytes())?;
    stream.flush()
}
