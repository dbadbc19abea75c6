//! The target side: connect, negotiate TLS, authenticate with the
//! credential only the appliance holds, and collect the session parameters.

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramSha256,
};
use postgres_protocol::message::{backend, frontend};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec;
use super::stream::PgStream;
use crate::error::SessionError;
use crate::gateway::{PgTarget, TargetTls};

/// How long the target has to accept a TCP connection and finish startup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Client startup parameters never forwarded: identity and database are the
/// connection's, and a replication connection is a different protocol with
/// powers a query session must not get. Settings (`options` and the rest)
/// arrive here already checked against the connection's `startup_options`
/// ([`super::options::check`]).
const WITHHELD_PARAMS: &[&str] = &["user", "database", "replication"];

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

/// A TCP connection to the target, upgraded to TLS when the connection's
/// `tls` mode asks for it: what both a session and a forwarded
/// CancelRequest start from.
pub async fn open(target: &PgTarget) -> Result<PgStream, SessionError> {
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

    Ok(match &target.tls {
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
    })
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
    let mut stream = open(target).await?;

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
                let (mut offered, mut plus_offered) = (false, false);
                while let Ok(Some(m)) = fallible_iterator::FallibleIterator::next(&mut mechanisms) {
                    offered |= m == SCRAM_SHA_256;
                    plus_offered |= m == SCRAM_SHA_256_PLUS;
                }
                if !offered {
                    return Err(auth_failed("target offers no SCRAM-SHA-256".into()));
                }
                // Over TLS, bind the exchange to the server's certificate
                // (tls-server-end-point) when the target offers it: a
                // man in the middle of an unverified (`require`)
                // connection then cannot relay the exchange. A target that
                // offers SCRAM-SHA-256-PLUS refuses a client that claims
                // it would bind but thinks the server cannot ('y'), so
                // without a usable certificate hash the client says it
                // does not bind ('n'), as libpq does.
                let end_point = match (&stream, plus_offered) {
                    (PgStream::Tls(tls), true) => server_end_point(tls),
                    _ => None,
                };
                let (mechanism, binding) = match end_point {
                    Some(hash) => (
                        SCRAM_SHA_256_PLUS,
                        ChannelBinding::tls_server_end_point(hash),
                    ),
                    None if stream.is_tls() && !plus_offered => {
                        (SCRAM_SHA_256, ChannelBinding::unrequested())
                    }
                    None => (SCRAM_SHA_256, ChannelBinding::unsupported()),
                };
                let s = ScramSha256::new(password()?, binding);
                frontend::sasl_initial_response(mechanism, s.message(), &mut out)
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

/// The tls-server-end-point channel binding (RFC 5929): the hash of the
/// target's certificate with its signature's hash (SHA-256 for MD5 and
/// SHA-1). `None` for signature algorithms without one hash (RSA-PSS,
/// Ed25519) or a certificate that does not parse.
fn server_end_point(tls: &tokio_rustls::TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let tokio_rustls::TlsStream::Client(client) = tls else {
        return None;
    };
    let der = client.get_ref().1.peer_certificates()?.first()?.as_ref();
    Some(match signature_hash(der)? {
        Hash::Sha256 => sha2::Sha256::digest(der).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(der).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(der).to_vec(),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// The hash RFC 5929 uses for a certificate, from the OID of its
/// `signatureAlgorithm` (Certificate ::= SEQUENCE { tbsCertificate,
/// signatureAlgorithm SEQUENCE { algorithm OID, ... }, signature }).
fn signature_hash(der: &[u8]) -> Option<Hash> {
    let (tag, certificate, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der_element(certificate)?;
    let (tag, algorithm, _) = der_element(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = der_element(algorithm)?;
    if tag != 0x06 {
        return None;
    }
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    match oid {
        // md5, sha1, sha256 with RSA; ecdsa with sha1, sha256
        [rsa @ .., 4 | 5 | 11] if rsa == RSA => Some(Hash::Sha256),
        [rsa @ .., 12] if rsa == RSA => Some(Hash::Sha384),
        [rsa @ .., 13] if rsa == RSA => Some(Hash::Sha512),
        o if o == ECDSA_SHA1 => Some(Hash::Sha256),
        [ec @ .., 2] if ec == ECDSA_SHA2 => Some(Hash::Sha256),
        [ec @ .., 3] if ec == ECDSA_SHA2 => Some(Hash::Sha384),
        [ec @ .., 4] if ec == ECDSA_SHA2 => Some(Hash::Sha512),
        _ => None,
    }
}

/// One DER element: `(tag, contents, what follows)`.
fn der_element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's outline: SEQUENCE { tbs, SEQUENCE { OID }, BIT STRING }.
    fn outline(oid: &[u8]) -> Vec<u8> {
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x00];
        let mut alg = vec![0x30, oid.len() as u8 + 2, 0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        let sig = [0x03, 0x02, 0x00, 0xff];
        let body: Vec<u8> = [&tbs[..], &alg, &sig].concat();
        // A long-form length, as real certificates have.
        let mut cert = vec![0x30, 0x81, body.len() as u8];
        cert.extend_from_slice(&body);
        cert
    }

    #[test]
    fn certificate_hashes_follow_the_signature_algorithm() {
        let sha256_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 11];
        let sha1_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 5];
        let ecdsa_384 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
        let ed25519 = [0x2b, 0x65, 0x70];
        assert_eq!(signature_hash(&outline(&sha256_rsa)), Some(Hash::Sha256));
        assert_eq!(signature_hash(&outline(&sha1_rsa)), Some(Hash::Sha256));
        assert_eq!(signature_hash(&outline(&ecdsa_384)), Some(Hash::Sha384));
        assert_eq!(signature_hash(&outline(&ed25519)), None);
        assert_eq!(signature_hash(&outline(&sha256_rsa)[..10]), None);
        assert_eq!(signature_hash(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
