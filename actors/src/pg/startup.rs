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
    /// A CancelRequest, in plaintext or (libpq 17 and later) inside TLS.
    /// The stream is kept so it can be closed the way PostgreSQL closes
    /// it: with a TLS close_notify, without which libpq 17 reports the
    /// cancel as failed ("SSL error: unexpected eof").
    Cancel {
        process_id: i32,
        secret_key: i32,
        stream: PgStream,
    },
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
            // Garbage where a startup packet belongs gets no answer, as
            // from PostgreSQL: whatever sent it does not speak the protocol,
            // and a driver that sent a stray Terminate must not see an
            // error event.
            let quiet = matches!(
                e,
                SessionError::ClientIo(_)
                    | SessionError::ClientProtocol(CodecError::StartupLength(_))
            );
            if let Some(stream) = slot.as_mut()
                && !quiet
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

/// The negotiation before the startup message, without I/O: what the
/// bytes a client sent so far ask the server to do next. The async loop
/// below does the reading, writing and TLS; the fuzz target `pg_startup`
/// drives this state machine with arbitrary bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Answer `N`: GSSAPI encryption, or TLS when none is configured.
    Refuse,
    /// Answer `S`, then run the TLS handshake.
    StartTls,
    /// A CancelRequest, before or (libpq 17 and later) after the TLS
    /// handshake; either ends the negotiation.
    Cancel {
        process_id: i32,
        secret_key: i32,
    },
    Startup {
        params: Vec<(String, String)>,
    },
}

/// The negotiation's state: how many requests were answered and whether
/// TLS is up. Terminal after `Cancel`, `Startup` or an error.
#[derive(Debug)]
pub struct Negotiation {
    tls_offered: bool,
    in_tls: bool,
    answered: u8,
}

/// A client may try GSSENC, then SSL, then start; never more than that.
const MAX_NEGOTIATION_REQUESTS: u8 = 3;

impl Negotiation {
    /// `tls_offered`: a TLS acceptor is configured.
    pub fn new(tls_offered: bool) -> Self {
        Negotiation {
            tls_offered,
            in_tls: false,
            answered: 0,
        }
    }

    /// The next request in `buf`, consumed from it; `Ok(None)` means wait
    /// for more bytes.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, SessionError> {
        if self.answered >= MAX_NEGOTIATION_REQUESTS {
            return Err(SessionError::ClientUnsupported(
                "too many negotiation requests",
            ));
        }
        let Some(initial) = codec::decode_initial(buf)? else {
            return Ok(None);
        };
        self.answered += 1;
        Ok(Some(match initial {
            Initial::Cancel {
                process_id,
                secret_key,
            } => Request::Cancel {
                process_id,
                secret_key,
            },
            Initial::GssEncRequest => Request::Refuse,
            Initial::SslRequest => {
                if self.in_tls {
                    return Err(SessionError::ClientUnsupported("SSLRequest inside TLS"));
                }
                // Bytes sent after SSLRequest but before the handshake would
                // be trusted as if they came through TLS (the server-side
                // twin of CVE-2021-23222); refuse them.
                if !buf.is_empty() {
                    return Err(CodecError::Malformed("data after SSLRequest").into());
                }
                if self.tls_offered {
                    Request::StartTls
                } else {
                    Request::Refuse
                }
            }
            Initial::Startup { params } => Request::Startup { params },
        }))
    }

    /// The handshake `StartTls` asked for completed: what follows arrives
    /// inside TLS.
    pub fn tls_started(&mut self) {
        self.in_tls = true;
    }
}

/// The negotiation loop. `slot` holds the stream (plain, then TLS) so the
/// caller can still report an error on it; a startup takes it out.
async fn negotiate(
    slot: &mut Option<PgStream>,
    buf: &mut BytesMut,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Result<Hello, SessionError> {
    let mut negotiation = Negotiation::new(tls.is_some());
    loop {
        let Some(stream) = slot.as_mut() else {
            return Err(SessionError::Internal(
                "stream lost during negotiation".into(),
            ));
        };
        let request = loop {
            if let Some(request) = negotiation.next(buf)? {
                break request;
            }
            if stream.read_buf(buf).await.map_err(SessionError::ClientIo)? == 0 {
                return Err(SessionError::ClientIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
        };
        match request {
            Request::Cancel {
                process_id,
                secret_key,
            } => {
                let stream = slot.take().ok_or_else(|| {
                    SessionError::Internal("stream lost during negotiation".into())
                })?;
                return Ok(Hello::Cancel {
                    process_id,
                    secret_key,
                    stream,
                });
            }
            Request::Refuse => {
                stream
                    .write_all(b"N")
                    .await
                    .map_err(SessionError::ClientIo)?;
            }
            Request::StartTls => {
                let Some(acceptor) = tls else {
                    return Err(SessionError::Internal("TLS without an acceptor".into()));
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
                negotiation.tls_started();
            }
            Request::Startup { params } => {
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
}

/// The client's PasswordMessage, consumed from `buf` if it holds one
/// whole: the token, trimmed. `Ok(None)` means wait for more bytes.
pub fn decode_password(buf: &mut BytesMut) -> Result<Option<String>, SessionError> {
    let Some(len) = codec::frame_len(buf, MAX_PASSWORD_MESSAGE)? else {
        return Ok(None);
    };
    let frame = buf.split_to(len);
    if frame[0] != b'p' {
        return Err(CodecError::Malformed("expected a password message").into());
    }
    let mut r = codec::Reader::new(&frame[codec::HEADER_LEN..]);
    let token = r.cstr("PasswordMessage")?;
    r.finish("PasswordMessage")?;
    Ok(Some(token.trim().to_owned()))
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
    loop {
        if let Some(token) = decode_password(&mut client.buffered)? {
            return Ok(token);
        }
        if client
            .stream
            .read_buf(&mut client.buffered)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn initial(code: i32, body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn startup() -> Vec<u8> {
        initial(codec::PROTOCOL_3_0, b"user\0bot\0database\0orders\0\0")
    }

    #[test]
    fn gssenc_then_ssl_then_startup() {
        let mut n = Negotiation::new(true);
        let mut buf = BytesMut::from(&initial(codec::GSSENC_REQUEST_CODE, &[])[..]);
        assert_eq!(n.next(&mut buf).unwrap(), Some(Request::Refuse));
        buf.extend_from_slice(&initial(codec::SSL_REQUEST_CODE, &[])[..4]);
        assert_eq!(n.next(&mut buf).unwrap(), None, "half a request: wait");
        buf.extend_from_slice(&initial(codec::SSL_REQUEST_CODE, &[])[4..]);
        assert_eq!(n.next(&mut buf).unwrap(), Some(Request::StartTls));
        n.tls_started();
        buf.extend_from_slice(&startup());
        let Some(Request::Startup { params }) = n.next(&mut buf).unwrap() else {
            panic!("expected the startup message");
        };
        assert_eq!(params[1], ("database".into(), "orders".into()));
    }

    #[test]
    fn ssl_without_tls_is_refused_and_may_not_repeat_inside_tls() {
        let ssl = initial(codec::SSL_REQUEST_CODE, &[]);
        let mut n = Negotiation::new(false);
        let mut buf = BytesMut::from(&ssl[..]);
        assert_eq!(n.next(&mut buf).unwrap(), Some(Request::Refuse));

        let mut n = Negotiation::new(true);
        let mut buf = BytesMut::from(&ssl[..]);
        assert_eq!(n.next(&mut buf).unwrap(), Some(Request::StartTls));
        n.tls_started();
        buf.extend_from_slice(&ssl);
        assert!(n.next(&mut buf).is_err());
    }

    /// libpq 17 sends its CancelRequest inside TLS: the negotiation must
    /// hand it over after the handshake as it does in plaintext.
    #[test]
    fn cancel_before_or_after_tls() {
        let cancel = initial(codec::CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 0, 0, 0, 9]);
        let want = Some(Request::Cancel {
            process_id: 7,
            secret_key: 9,
        });
        let mut n = Negotiation::new(true);
        let mut buf = BytesMut::from(&cancel[..]);
        assert_eq!(n.next(&mut buf).unwrap(), want);

        let mut n = Negotiation::new(true);
        let mut buf = BytesMut::from(&initial(codec::SSL_REQUEST_CODE, &[])[..]);
        assert_eq!(n.next(&mut buf).unwrap(), Some(Request::StartTls));
        n.tls_started();
        buf.extend_from_slice(&cancel);
        assert_eq!(n.next(&mut buf).unwrap(), want);
    }

    #[test]
    fn bytes_glued_to_ssl_request_are_refused() {
        let mut buf = BytesMut::from(&initial(codec::SSL_REQUEST_CODE, &[])[..]);
        buf.extend_from_slice(&startup());
        let e = Negotiation::new(true).next(&mut buf).unwrap_err();
        assert!(e.to_string().contains("data after SSLRequest"), "{e}");
    }

    #[test]
    fn at_most_three_requests() {
        let gss = initial(codec::GSSENC_REQUEST_CODE, &[]);
        let mut n = Negotiation::new(false);
        let mut buf = BytesMut::new();
        for _ in 0..3 {
            buf.extend_from_slice(&gss);
            assert_eq!(n.next(&mut buf).unwrap(), Some(Request::Refuse));
        }
        buf.extend_from_slice(&startup());
        assert!(n.next(&mut buf).is_err());
    }

    #[test]
    fn password_message_is_the_trimmed_token() {
        let mut buf = BytesMut::from(&b"p\0\0\0\x0e eyJx.y \0"[..]);
        assert_eq!(decode_password(&mut buf).unwrap(), None, "one byte short");
        let mut buf = BytesMut::from(&b"p\0\0\0\x0d eyJx.y \0X"[..]);
        assert_eq!(
            decode_password(&mut buf).unwrap().as_deref(),
            Some("eyJx.y")
        );
        assert_eq!(&buf[..], b"X", "later bytes stay buffered");
        let mut buf = BytesMut::from(&b"Q\0\0\0\x05\0"[..]);
        assert!(decode_password(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"p\x7f\0\0\0"[..]);
        assert!(
            decode_password(&mut buf).is_err(),
            "over the password limit"
        );
    }
}
