//! The target side: connect, negotiate TLS, authenticate with the
//! credential only the appliance holds, and collect the session parameters.

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec;
use super::stream::PgStream;
use crate::error::SessionError;
use crate::gateway::{PgTarget, TargetTls};

/// How long the target has to accept a TCP connection and finish startup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Client startup parameters never forwarded: identity and database are the
/// connection's, a replication connection is a different protocol with
/// powers a query session must not get, and `options` can set any server
/// setting (overriding what an administrator pinned with ALTER ROLE).
const WITHHELD_PARAMS: &[&str] = &["user", "database", "replication", "options"];

/// A target connection that finished startup and is ready for queries.
pub struct Upstream {
    pub stream: PgStream,
    /// ParameterStatus pairs the target reported.
    pub params: Vec<(String, String)>,
    /// The target's cancel key.
    pub process_id: i32,
    pub secret_key: i32,
    /// Bytes read past ReadyForQuery (normally none).
    pub buffered: BytesMut,
}

pub async fn connect(
    target: &PgTarget,
    client_params: &[(String, String)],
) -> Result<Upstream, SessionError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(target, client_params)).await {
        Ok(result) => result,
        Err(_) => Err(SessionError::TargetUnreachable {
            connection: target.name.clone(),
            address: target.address.clone(),
            detail: format!("no answer within {CONNECT_TIMEOUT:?}"),
        }),
    }
}

async fn connect_inner(
    target: &PgTarget,
    client_params: &[(String, String)],
) -> Result<Upstream, SessionError> {
    let unreachable = |detail: String| SessionError::TargetUnreachable {
        connection: target.name.clone(),
        address: target.address.clone(),
        detail,
    };
    let failed = |detail: String| SessionError::TargetFailed {
        connection: target.name.clone(),
        detail,
    };
    let socket = TcpStream::connect(&target.address)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = socket.set_nodelay(true);
    super::stream::keepalive(&socket);

    let mut stream = match &target.tls {
        TargetTls::Disable => PgStream::Plain(socket),
        TargetTls::Require(config) | TargetTls::VerifyFull(config) => {
            let mut socket = socket;
            let mut out = BytesMut::new();
            frontend::ssl_request(&mut out);
            socket
                .write_all(&out)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let mut answer = [0u8; 1];
            socket
                .read_exact(&mut answer)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            if answer[0] != b'S' {
                return Err(failed(
                    "target does not offer TLS, which this connection requires".into(),
                ));
            }
            let name = rustls_pki_types::ServerName::try_from(target.host().to_owned())
                .map_err(|e| failed(format!("bad server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, socket)
                .await
                .map_err(|e| failed(format!("TLS: {e}")))?;
            PgStream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)))
        }
    };

    let mut out = BytesMut::new();
    let params = [
        ("user", target.user.as_str()),
        ("database", target.database.as_str()),
    ]
    .into_iter()
    .chain(
        client_params
            .iter()
            .filter(|(k, _)| !WITHHELD_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    frontend::startup_message(params, &mut out).map_err(|e| failed(e.to_string()))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| unreachable(e.to_string()))?;

    let mut buf = BytesMut::with_capacity(4096);
    let mut scram: Option<ScramSha256> = None;
    let mut scram_done = false;
    // The password itself only goes to a target whose identity is proven
    // by its certificate, or one on this machine.
    let cleartext_ok = matches!(target.tls, TargetTls::VerifyFull(_))
        || target.host() == "localhost"
        || target
            .host()
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let mut upstream_params = Vec::new();
    let mut key = (0, 0);
    let auth_failed = |detail: String| SessionError::TargetAuth {
        connection: target.name.clone(),
        detail,
    };
    let password = || {
        target
            .password
            .as_ref()
            .map(|p| p.expose().as_bytes())
            .ok_or_else(|| auth_failed("target asked for a password and none is configured".into()))
    };
    loop {
        let msg = loop {
            // The target is trusted more than clients, but its frames still
            // go through the same length checks before the parser sees them.
            if let Some(len) = codec::frame_len(&buf, codec::MAX_BACKEND_FRAME)
                .map_err(|e| failed(e.to_string()))?
            {
                let mut frame = buf.split_to(len);
                match backend::Message::parse(&mut frame) {
                    Ok(Some(msg)) => break msg,
                    _ => return Err(failed("malformed startup message from target".into())),
                }
            }
            if stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| unreachable(e.to_string()))?
                == 0
            {
                return Err(failed("target closed the connection during startup".into()));
            }
        };
        out.clear();
        match msg {
            backend::Message::AuthenticationOk => {
                // A server that began SCRAM must finish it: the final step
                // is where it proves it knows the password. Skipping it is
                // what an impostor in the middle would do.
                if scram.is_some() && !scram_done {
                    return Err(auth_failed(
                        "target skipped SCRAM's server signature".into(),
                    ));
                }
            }
            backend::Message::AuthenticationCleartextPassword => {
                if !cleartext_ok {
                    return Err(auth_failed(
                        "target asked for a cleartext password over a connection whose certificate is not verified; use tls = \"verify-full\" (or a loopback target)".into(),
                    ));
                }
                frontend::password_message(password()?, &mut out)
                    .map_err(|e| failed(e.to_string()))?;
            }
            backend::Message::AuthenticationMd5Password(body) => {
                let hash = postgres_protocol::authentication::md5_hash(
                    target.user.as_bytes(),
                    password()?,
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut out)
                    .map_err(|e| failed(e.to_string()))?;
            }
            backend::Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut offered = false;
                while let Ok(Some(m)) = fallible_iterator::FallibleIterator::next(&mut mechanisms) {
                    offered |= m == SCRAM_SHA_256;
                }
                if !offered {
                    return Err(auth_failed("target offers no SCRAM-SHA-256".into()));
                }
                let binding = if stream.is_tls() {
                    ChannelBinding::unrequested()
                } else {
                    ChannelBinding::unsupported()
                };
                let s = ScramSha256::new(password()?, binding);
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)
                    .map_err(|e| failed(e.to_string()))?;
                scram = Some(s);
            }
            backend::Message::AuthenticationSaslContinue(body) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| failed("SASL continue without a start".into()))?;
                s.update(body.data())
                    .map_err(|e| auth_failed(e.to_string()))?;
                frontend::sasl_response(s.message(), &mut out)
                    .map_err(|e| failed(e.to_string()))?;
            }
            backend::Message::AuthenticationSaslFinal(body) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| failed("SASL final without a start".into()))?;
                // Verifies the server's signature: a target that does not
                // know the password cannot pretend to.
                s.finish(body.data())
                    .map_err(|e| auth_failed(e.to_string()))?;
                scram_done = true;
            }
            backend::Message::ParameterStatus(body) => {
                if let (Ok(k), Ok(v)) = (body.name(), body.value()) {
                    upstream_params.push((k.to_owned(), v.to_owned()));
                }
            }
            backend::Message::BackendKeyData(body) => {
                key = (body.process_id(), body.secret_key());
            }
            backend::Message::NoticeResponse(_) => {}
            backend::Message::ReadyForQuery(_) => {
                return Ok(Upstream {
                    stream,
                    params: upstream_params,
                    process_id: key.0,
                    secret_key: key.1,
                    buffered: buf,
                });
            }
            backend::Message::ErrorResponse(body) => {
                let mut code = String::new();
                let mut message = String::new();
                let mut fields = body.fields();
                while let Ok(Some(f)) = fallible_iterator::FallibleIterator::next(&mut fields) {
                    match f.type_() {
                        b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                        b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                        _ => {}
                    }
                }
                let detail = format!("{code}: {message}");
                return Err(if code.starts_with("28") {
                    auth_failed(detail)
                } else {
                    failed(detail)
                });
            }
            _ => {
                return Err(failed(
                    "unexpected message from target during startup".into(),
                ));
            }
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        }
    }
}
