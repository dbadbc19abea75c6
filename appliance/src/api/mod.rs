//! The HTTPS API on `[listen] api`, with the listeners' TLS certificate:
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /v1/ssh/certificate` | an SSH user certificate for a token ([`certificate`]) |
//! | `GET /healthz` | 200 when listeners and recorder are healthy, else 503 with the reasons ([`health`]) |
//! | `GET /metrics` | Prometheus text ([`health`]) |
//!
//! Every request is bounded: connections (at most [`MAX_CONNECTIONS`], a
//! TLS handshake within [`HANDSHAKE_TIMEOUT`], request headers within
//! [`HEADER_TIMEOUT`] and [`MAX_HEAD_BYTES`], a whole connection within
//! [`CONNECTION_LIFETIME`]), bodies ([`MAX_BODY_BYTES`], read within
//! [`BODY_TIMEOUT`]). Errors are JSON `{"error": "..."}` and never repeat
//! a token. Nothing here unwraps what a client sent.
//!
//! Layout: this module the listener, routing and replies; `certificate`
//! the certificate endpoint and its limits; `health` health and metrics.

mod certificate;
mod health;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use certificate::CertificateIssuer;
pub use health::Health;

/// Connections served at once; more are closed at accept. An API answers
/// scrapes, health checks and agents' logins, never thousands at once.
pub const MAX_CONNECTIONS: usize = 256;
/// A client must finish its TLS handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ... and send each request's headers within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head: a bearer token is at most 32 KiB.
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// Largest request body: a public key in JSON is well under 4 KiB.
pub const MAX_BODY_BYTES: usize = 16 << 10;
/// A body over [`MAX_BODY_BYTES`] is read and dropped up to this before
/// the 413, so the client reads the reply instead of a reset; past it the
/// connection is closed.
pub const DRAIN_BYTES: usize = 1 << 20;
/// A body must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer, keep-alive included: a slow or idle client
/// cannot hold a slot for ever.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

pub type Reply = Response<Full<Bytes>>;

/// What the API answers with.
pub struct Api {
    pub health: Health,
    /// `None` without `[listen] ssh`: the certificate endpoint is 404.
    pub certificates: Option<CertificateIssuer>,
}

/// Bind `[listen] api` and serve it in the background: health and
/// metrics always, certificates when `[listen] ssh` is configured (the
/// user CA and the SSH host key are created in `data_dir` on first use).
pub async fn start(
    settings: &crate::config::ApiSettings,
    data_dir: &std::path::Path,
    health: Health,
    verifier: Arc<crate::oidc::OidcVerifier>,
    cert: &Arc<crate::tls::ListenerCert>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let certificates = match settings.ssh_port {
        None => None,
        Some(port) => {
            let ca = crate::keyfile::load_or_create(
                data_dir,
                crate::keyfile::SSH_USER_CA,
                "SSH user CA",
            )?;
            let host = crate::keyfile::load_or_create(
                data_dir,
                crate::keyfile::SSH_HOST_KEY,
                "SSH host key",
            )?;
            Some(CertificateIssuer::new(
                verifier,
                ca,
                host.public_key(),
                port,
                settings.certificate_lifetime,
            )?)
        }
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding the API listener {}", settings.listen))?;
    tracing::info!(addr = %settings.listen, "API listener ready (HTTPS)");
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config(&[b"http/1.1"])));
    let api = Arc::new(Api {
        health,
        certificates,
    });
    actix::spawn(serve(listener, tls, api));
    Ok(())
}

/// Accept and serve until the task is dropped (with the runtime, after
/// the drain: health checks see the drain as 503 until then).
pub async fn serve(listener: TcpListener, tls: tokio_rustls::TlsAcceptor, api: Arc<Api>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!("API accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "API connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let (tls, api) = (tls.clone(), api.clone());
        actix::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(socket)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "API TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "API TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, "API connection: {e}"),
                Err(_) => {
                    tracing::debug!(%peer, "API connection closed after {CONNECTION_LIFETIME:?}")
                }
            }
        });
    }
}

impl Api {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/healthz") => self.health.healthz().await,
            (&Method::GET, "/metrics") => self.health.metrics().await,
            (&Method::POST, "/v1/ssh/certificate") => match &self.certificates {
                Some(issuer) => issuer.handle(req, peer).await,
                None => error(
                    StatusCode::NOT_FOUND,
                    "this appliance has no SSH listener ([listen] ssh): no certificates",
                ),
            },
            (_, "/healthz" | "/metrics" | "/v1/ssh/certificate") => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }
}

/// A JSON reply.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Reply {
    reply(status, "application/json", body.to_string())
}

/// `{"error": why}`.
pub fn error(status: StatusCode, why: &str) -> Reply {
    json(status, &serde_json::json!({ "error": why }))
}

pub fn reply(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The body, at most [`MAX_BODY_BYTES`] and within [`BODY_TIMEOUT`], or
/// the reply that refuses it.
///
/// A body over the cap is still read and thrown away, up to
/// [`DRAIN_BYTES`]: closing a connection with unread bytes in it resets
/// it, and the client would see a reset instead of its 413.
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            seen += data.len();
            if seen <= MAX_BODY_BYTES {
                kept.extend_from_slice(&data);
            } else if seen > DRAIN_BYTES {
                break;
            }
        }
        Ok::<_, hyper::Error>(())
    };
    let outcome = tokio::time::timeout(BODY_TIMEOUT, read).await;
    if seen > MAX_BODY_BYTES || declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match outcome {
        Ok(Ok(())) => Ok(Bytes::from(kept)),
        Ok(Err(_)) => Err(error(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
    }
}
