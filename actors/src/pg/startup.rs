//! The client side of a connection's start: TLS negotiation, the startup
//! message, and the password exchange that carries the agent's token.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, CodecError, Initial};
use super::stream::PgStream;
use crate::error::SessionError;

/// A token is a JWT of a few KiB; 64 KiB leaves room for fat group claims
/// while keeping an unauthenticated peer from making us buffer much.
pub const MAX_PASSWORD_MESSAGE: usize = 64 << 10;

/// What the first bytes of a connection asked for.
pub enum Hello {
    Cancel { process_id: i32, secret_key: i32 },
    Startup(ClientStartup),
}

/// A client that sent its startup message.
pub struct ClientStartup {
    pub stream: PgStream,
    pub params: Vec<(String, String)>,
    /// Bytes already read past the startup message.
    pub buffered: BytesMut,
}

impl ClientStartup {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Negotiate TLS and read the startup message. Errors the client can still
/// be told about (a malformed startup) are sent to it as a FATAL
/// ErrorResponse before returning. Whether a plaintext startup is acceptable
/// is the caller's decision, made after it recorded what the client asked.
pub async fn accept(
    socket: TcpStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Result<Hello, SessionError> {
    let mut slot = Some(PgStream::Plain(socket));
    let mut buf = BytesMut::with_capacity(1024);
    match negotiate(&mut slot, &mut buf, tls).await {
        Ok(Hello::Startup(mut s)) => {
            s.buffered = buf;
            Ok(Hello::Startup(s))
        }
        Ok(cancel) => Ok(cancel),
        Err(e) => {
            if let Some(stream) = slot.as_mut()
                && !matches!(e, SessionError::ClientIo(_))
            {
                let _ = send_fatal(stream, &e).await;
            }
            Err(e)
        }
    }
}

/// Write a FATAL ErrorResponse for `e` and close our side.
pub async fn send_fatal(stream: &mut PgStream, e: &SessionError) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    codec::put_error(&mut out, b'E', "FATAL", e.sqlstate(), &e.client_message());
    stream.write_all(&out).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// The negotiation loop. `slot` holds the stream (plain, then TLS) so the
/// caller can still report an error on it; a startup takes it out.
async fn negotiate(
    slot: &mut Option<PgStream>,
    buf: &mut BytesMut,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Result<Hello, SessionError> {
    // A client may try GSSENC, then SSL, then start; never more than that.
    for _ in 0..3 {
        let Some(stream) = slot.as_mut() else {
            return Err(SessionError::Internal(
                "stream lost during negotiation".into(),
            ));
        };
        match read_initial(stream, buf).await? {
            Initial::Cancel {
                process_id,
                secret_key,
            } => {
                return Ok(Hello::Cancel {
                    process_id,
                    secret_key,
                });
            }
            Initial::GssEncRequest => {
                stream
                    .write_all(b"N")
                    .await
                    .map_err(SessionError::ClientIo)?;
            }
            Initial::SslRequest => {
                if stream.is_tls() {
                    return Err(SessionError::ClientUnsupported("SSLRequest inside TLS"));
                }
                // Bytes sent after SSLRequest but before the handshake would
                // be trusted as if they came through TLS (the server-side
                // twin of CVE-2021-23222); refuse them.
                if !buf.is_empty() {
                    return Err(CodecError::Malformed("data after SSLRequest").into());
                }
                let Some(acceptor) = tls else {
                    stream
                        .write_all(b"N")
                        .await
                        .map_err(SessionError::ClientIo)?;
                    continue;
                };
                stream
                    .write_all(b"S")
                    .await
                    .map_err(SessionError::ClientIo)?;
                let Some(PgStream::Plain(socket)) = slot.take() else {
                    return Err(SessionError::Internal(
                        "stream lost during negotiation".into(),
                    ));
                };
                let tls = acceptor
                    .accept(socket)
                    .await
                    .map_err(SessionError::ClientIo)?;
                *slot = Some(PgStream::Tls(Box::new(tokio_rustls::TlsStream::Server(
                    tls,
                ))));
            }
            Initial::Startup { params } => {
                let stream = slot.take().ok_or_else(|| {
                    SessionError::Internal("stream lost during negotiation".into())
                })?;
                return Ok(Hello::Startup(ClientStartup {
                    stream,
                    params,
                    buffered: BytesMut::new(),
                }));
            }
        }
    }
    Err(SessionError::ClientUnsupported(
        "too many negotiation requests",
    ))
}

async fn read_initial(stream: &mut PgStream, buf: &mut BytesMut) -> Result<Initial, SessionError> {
    loop {
        if let Some(msg) = codec::decode_initial(buf)? {
            return Ok(msg);
        }
        if stream.read_buf(buf).await.map_err(SessionError::ClientIo)? == 0 {
            return Err(SessionError::ClientIo(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
}

/// Ask for a cleartext password (inside TLS) and return it: the agent's
/// token.
pub async fn read_token(client: &mut ClientStartup) -> Result<String, SessionError> {
    let mut out = BytesMut::new();
    codec::put_auth(&mut out, 3, &[]);
    client
        .stream
        .write_all(&out)
        .await
        .map_err(SessionError::ClientIo)?;
    let buf = &mut client.buffered;
    loop {
        if let Some(len) = codec::frame_len(buf, MAX_PASSWORD_MESSAGE)? {
            let frame = buf.split_to(len);
            if frame[0] != b'p' {
                return Err(CodecError::Malformed("expected a password message").into());
            }
            let mut r = codec::Reader::new(&frame[5..]);
            let token = r.cstr("PasswordMessage")?;
            r.finish("PasswordMessage")?;
            return Ok(token.trim().to_owned());
        }
        if client
            .stream
            .read_buf(buf)
            .await
            .map_err(SessionError::ClientIo)?
            == 0
        {
            return Err(SessionError::ClientIo(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
}
