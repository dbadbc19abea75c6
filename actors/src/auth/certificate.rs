//! OpenSSH user certificates that carry a verified [`Identity`].
//!
//! Stock `ssh` cannot send a JWT (its password prompt stops at 1,023
//! bytes), so an agent trades its token for a short-lived certificate
//! (`POST /v1/ssh/certificate`, `gatehouse login`) and logs in with that.
//! The certificate is the token's verdict, signed: at login Gatehouse
//! checks the CA signature, the validity window and the principal, and
//! takes the identity from the certificate alone — no token, no issuer
//! round trip, and it survives a restart of the appliance.
//!
//! What a certificate holds:
//!
//! | field | value |
//! | --- | --- |
//! | type | user |
//! | key id, the one principal | `issuer:subject` ([`Identity::qualified`]) |
//! | extension `issuer@gatehouse` | the issuer's configured name |
//! | extension `subject@gatehouse` | the token's `sub` |
//! | extension `groups@gatehouse` | the groups, a JSON array of strings |
//! | extension `claims@gatehouse` | the other claims, a JSON object |
//! | valid after / before | issue time − 60 s / no later than the token's `exp` and the configured lifetime |
//!
//! Extensions are signed with the rest of the certificate; critical
//! options are never set, and a certificate carrying any is refused (an
//! option this code does not know could be a restriction it would ignore).

use std::time::Duration;

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::{Certificate, HashAlg, PrivateKey, PublicKey};

use super::Identity;

const EXT_ISSUER: &str = "issuer@gatehouse";
const EXT_SUBJECT: &str = "subject@gatehouse";
const EXT_GROUPS: &str = "groups@gatehouse";
const EXT_CLAIMS: &str = "claims@gatehouse";

/// Clock skew allowed for a certificate just issued on this appliance and
/// used against another one.
const BACKDATE: u64 = 60;

/// Largest identity a certificate carries (groups and claims as JSON).
/// OpenSSH sends the certificate in every login; tokens with more claims
/// than this are refused at issuance instead of making certificates no
/// client can use.
pub const MAX_IDENTITY_BYTES: usize = 16 << 10;

/// Why a certificate could not be issued or was refused at login. The
/// `Display` text is safe for the client and the log: it never carries a
/// key or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("not signed by this appliance's user CA")]
    WrongCa,
    #[error("certificate signature does not verify")]
    BadSignature,
    #[error("certificate expired")]
    Expired,
    #[error("certificate not yet valid")]
    NotYetValid,
    #[error("not a user certificate")]
    NotUserCertificate,
    #[error("certificate principals do not name its identity")]
    WrongPrincipal,
    #[error("certificate carries critical options this appliance does not know")]
    CriticalOptions,
    #[error("certificate identity is malformed: {0}")]
    Malformed(&'static str),
    #[error("the identity is too large for a certificate ({0} bytes of groups and claims)")]
    TooLarge(usize),
    #[error("the token expires before a certificate could be used")]
    TooShort,
    #[error("certificate could not be signed: {0}")]
    Signing(String),
}

/// Issue a user certificate for `subject_key` carrying `identity`, valid
/// from a minute ago until `not_after` (unix seconds: the token's `exp`) or
/// `now + lifetime`, whichever comes first.
pub fn issue(
    ca: &PrivateKey,
    identity: &Identity,
    subject_key: &PublicKey,
    now: u64,
    not_after: u64,
    lifetime: Duration,
) -> Result<Certificate, CertError> {
    if identity.issuer.contains(':') || identity.issuer.is_empty() || identity.subject.is_empty() {
        return Err(CertError::Malformed("issuer or subject"));
    }
    let valid_before = not_after.min(now.saturating_add(lifetime.as_secs()));
    if valid_before <= now {
        return Err(CertError::TooShort);
    }
    let groups = serde_json::to_string(&identity.groups)
        .map_err(|_| CertError::Malformed("groups are not JSON"))?;
    let claims = serde_json::to_string(&identity.claims)
        .map_err(|_| CertError::Malformed("claims are not JSON"))?;
    let size = groups.len() + claims.len();
    if size > MAX_IDENTITY_BYTES {
        return Err(CertError::TooLarge(size));
    }
    let mut nonce = [0u8; 32];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CertError::Signing("no randomness".into()))?;
    let mut serial = [0u8; 8];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| CertError::Signing("no randomness".into()))?;
    let qualified = identity.qualified();
    let signing = |e: russh::keys::ssh_key::Error| CertError::Signing(e.to_string());
    let mut builder = Builder::new(
        nonce.to_vec(),
        subject_key.key_data().clone(),
        now.saturating_sub(BACKDATE),
        valid_before,
    )
    .map_err(signing)?;
    builder
        .serial(u64::from_be_bytes(serial))
        .map_err(signing)?
        .cert_type(CertType::User)
        .map_err(signing)?
        .key_id(qualified.clone())
        .map_err(signing)?
        .valid_principal(qualified)
        .map_err(signing)?
        .extension(EXT_ISSUER, identity.issuer.clone())
        .map_err(signing)?
        .extension(EXT_SUBJECT, identity.subject.clone())
        .map_err(signing)?
        .extension(EXT_GROUPS, groups)
        .map_err(signing)?
        .extension(EXT_CLAIMS, claims)
        .map_err(signing)?;
    builder.sign(ca).map_err(signing)
}

/// Check a certificate presented at login against the CA's public key at
/// `now` (unix seconds) and return the identity it carries.
pub fn verify(ca: &PublicKey, cert: &Certificate, now: u64) -> Result<Identity, CertError> {
    if cert.signature_key() != ca.key_data() {
        return Err(CertError::WrongCa);
    }
    let ca_fingerprint = ca.fingerprint(HashAlg::Sha256);
    if cert.cert_type() != CertType::User {
        return Err(CertError::NotUserCertificate);
    }
    if now < cert.valid_after() {
        return Err(CertError::NotYetValid);
    }
    if now >= cert.valid_before() {
        return Err(CertError::Expired);
    }
    // Signature, CA and window once more, by the library's own rules.
    cert.validate_at(now, [&ca_fingerprint])
        .map_err(|_| CertError::BadSignature)?;
    if !cert.critical_options().is_empty() {
        return Err(CertError::CriticalOptions);
    }
    let ext = |name: &'static str| {
        cert.extensions()
            .get(name)
            .ok_or(CertError::Malformed(name))
    };
    let issuer = ext(EXT_ISSUER)?.clone();
    let subject = ext(EXT_SUBJECT)?.clone();
    let groups: Vec<String> =
        serde_json::from_str(ext(EXT_GROUPS)?).map_err(|_| CertError::Malformed(EXT_GROUPS))?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(ext(EXT_CLAIMS)?).map_err(|_| CertError::Malformed(EXT_CLAIMS))?;
    let identity = Identity {
        issuer,
        subject,
        groups,
        claims,
    };
    if identity.issuer.contains(':') {
        return Err(CertError::Malformed(EXT_ISSUER));
    }
    let qualified = identity.qualified();
    if cert.key_id() != qualified || cert.valid_principals() != [qualified] {
        return Err(CertError::WrongPrincipal);
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn identity() -> Identity {
        let mut claims = serde_json::Map::new();
        claims.insert("repository".into(), "acme/deploy".into());
        claims.insert("ref_protected".into(), true.into());
        Identity {
            issuer: "github".into(),
            subject: "repo:acme/deploy:ref:refs/heads/main".into(),
            groups: vec!["ci-deploy".into()],
            claims,
        }
    }

    const NOW: u64 = 1_800_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn round_trip_through_openssh_text() {
        let ca = key(1);
        let agent = key(2);
        let cert = issue(&ca, &identity(), agent.public_key(), NOW, NOW + 600, HOUR).unwrap();
        // What `gatehouse login` writes and ssh sends back.
        let text = cert.to_openssh().unwrap();
        let back = Certificate::from_openssh(&text).unwrap();
        assert_eq!(verify(ca.public_key(), &back, NOW + 1).unwrap(), identity());
        assert_eq!(back.public_key(), agent.public_key().key_data());
        // The token's expiry bounds the certificate.
        assert_eq!(back.valid_before(), NOW + 600);
        assert_eq!(back.key_id(), "github:repo:acme/deploy:ref:refs/heads/main");
    }

    #[test]
    fn lifetime_bounds_the_certificate() {
        let ca = key(1);
        let cert = issue(
            &ca,
            &identity(),
            key(2).public_key(),
            NOW,
            NOW + 86_400,
            HOUR,
        )
        .unwrap();
        assert_eq!(cert.valid_before(), NOW + 3600);
        assert_eq!(
            verify(ca.public_key(), &cert, NOW + 3599).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            verify(ca.public_key(), &cert, NOW + 3600),
            Err(CertError::Expired)
        );
        assert_eq!(
            verify(ca.public_key(), &cert, NOW - 61),
            Err(CertError::NotYetValid)
        );
    }

    #[test]
    fn another_ca_is_refused() {
        let cert = issue(
            &key(3),
            &identity(),
            key(2).public_key(),
            NOW,
            NOW + 600,
            HOUR,
        )
        .unwrap();
        assert_eq!(
            verify(key(1).public_key(), &cert, NOW),
            Err(CertError::WrongCa)
        );
    }

    #[test]
    fn an_expired_token_gets_no_certificate() {
        assert_eq!(
            issue(&key(1), &identity(), key(2).public_key(), NOW, NOW, HOUR).map(|_| ()),
            Err(CertError::TooShort)
        );
    }

    #[test]
    fn oversized_identities_are_refused_at_issuance() {
        let mut big = identity();
        big.claims
            .insert("blob".into(), "x".repeat(MAX_IDENTITY_BYTES).into());
        assert!(matches!(
            issue(&key(1), &big, key(2).public_key(), NOW, NOW + 600, HOUR),
            Err(CertError::TooLarge(_))
        ));
    }

    /// A certificate signed by the right CA but naming another principal
    /// than its identity (made by hand, as an attacker holding a leaked CA
    /// key for another appliance could not, but a bug could) is refused.
    #[test]
    fn principal_must_name_the_identity() {
        let ca = key(1);
        let id = identity();
        let mut b = Builder::new(
            vec![0; 32],
            key(2).public_key().key_data().clone(),
            NOW - 10,
            NOW + 600,
        )
        .unwrap();
        b.cert_type(CertType::User)
            .unwrap()
            .key_id(id.qualified())
            .unwrap()
            .valid_principal("root")
            .unwrap()
            .extension(EXT_ISSUER, id.issuer.clone())
            .unwrap()
            .extension(EXT_SUBJECT, id.subject.clone())
            .unwrap()
            .extension(EXT_GROUPS, "[]")
            .unwrap()
            .extension(EXT_CLAIMS, "{}")
            .unwrap();
        let cert = b.sign(&ca).unwrap();
        assert_eq!(
            verify(ca.public_key(), &cert, NOW),
            Err(CertError::WrongPrincipal)
        );
    }

    #[test]
    fn critical_options_are_refused() {
        let ca = key(1);
        let id = identity();
        let mut b = Builder::new(
            vec![0; 32],
            key(2).public_key().key_data().clone(),
            NOW - 10,
            NOW + 600,
        )
        .unwrap();
        b.cert_type(CertType::User)
            .unwrap()
            .key_id(id.qualified())
            .unwrap()
            .valid_principal(id.qualified())
            .unwrap()
            .critical_option("force-command", "id")
            .unwrap()
            .extension(EXT_ISSUER, id.issuer.clone())
            .unwrap()
            .extension(EXT_SUBJECT, id.subject.clone())
            .unwrap()
            .extension(EXT_GROUPS, "[]")
            .unwrap()
            .extension(EXT_CLAIMS, "{}")
            .unwrap();
        let cert = b.sign(&ca).unwrap();
        assert_eq!(
            verify(ca.public_key(), &cert, NOW),
            Err(CertError::CriticalOptions)
        );
    }
}
