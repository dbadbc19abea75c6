//! A `[[connections]]` entry turned into a target: SSH (user, the held key
//! or password, the pinned host key) or PostgreSQL (database, user,
//! password file, startup options, TLS roots).

use std::sync::Arc;

use gatehouse_actors::gateway::{PgTarget, Secret, TargetTls};
use gatehouse_actors::policy::SqlPolicy;
use gatehouse_actors::ssh::{SshCredential, SshPolicy, SshTarget};
use toml::Spanned;

use super::Checker;
use crate::config::{RecordingMode, TlsMode};

/// An `[[connections]]` entry of kind `ssh`: address, user, the held key
/// or password, and the pinned host key.
pub(super) fn ssh_target(
    c: &mut Checker<'_>,
    conn: &super::Connection,
    policy: Arc<SshPolicy>,
) -> Option<SshTarget> {
    let name = conn.name.get_ref();
    let mut ok = true;
    for (set, key) in [
        (conn.database.is_some(), "database"),
        (conn.tls.is_some(), "tls"),
        (conn.ca_file.is_some(), "ca_file"),
    ] {
        if set {
            c.problem(
                &conn.name,
                format!("connection {name:?}: `{key}` is for PostgreSQL connections"),
            );
            ok = false;
        }
    }
    let user = match &conn.user {
        Some(u) if !u.is_empty() => u.clone(),
        _ => {
            c.problem(&conn.name, format!("connection {name:?} needs `user`"));
            ok = false;
            String::new()
        }
    };
    if conn.address.get_ref().rsplit_once(':').is_none() {
        c.problem(&conn.address, "address must be host:port");
        ok = false;
    }
    let credential = match (&conn.private_key_file, &conn.password_file) {
        (Some(k), None) => match c.existing_file(k, "private_key_file") {
            Some(path) => match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| russh::keys::PrivateKey::from_openssh(&t).map_err(|e| e.to_string()))
            {
                Ok(key) if key.is_encrypted() => {
                    c.problem(
                        k,
                        format!(
                            "private_key_file {} is encrypted; the appliance needs it without a passphrase (ssh-keygen -p -N '')",
                            path.display()
                        ),
                    );
                    None
                }
                Ok(key) => Some(SshCredential::Key(Arc::new(key))),
                Err(e) => {
                    c.problem(
                        k,
                        format!(
                            "private_key_file {} is not an OpenSSH private key ({e})",
                            path.display()
                        ),
                    );
                    None
                }
            },
            None => None,
        },
        (None, Some(p)) => match c.existing_file(p, "password_file") {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(s) => Some(SshCredential::Password(Secret::new(
                    s.trim_end_matches(['\n', '\r']).to_owned(),
                ))),
                Err(e) => {
                    c.problem(
                        p,
                        format!("password_file {} is unreadable: {e}", path.display()),
                    );
                    None
                }
            },
            None => None,
        },
        (Some(_), Some(_)) => {
            c.problem(
                &conn.name,
                format!(
                    "connection {name:?}: give `private_key_file` or `password_file`, not both"
                ),
            );
            None
        }
        (None, None) => {
            c.problem(
                &conn.name,
                format!("connection {name:?} needs `private_key_file` (or `password_file`)"),
            );
            None
        }
    };
    let host_key = match conn.host_key.as_deref() {
        Some(k) => match russh::keys::PublicKey::from_openssh(k.trim()) {
            Ok(key) => Some(key),
            Err(e) => {
                c.problem(
                    &conn.name,
                    format!(
                        "connection {name:?}: host_key is not an OpenSSH public key ({e}); write the target's key as in known_hosts without the host: \"ssh-ed25519 AAAA...\" (ssh-keyscan prints it)"
                    ),
                );
                None
            }
        },
        None => {
            c.problem(
                &conn.name,
                format!("connection {name:?} needs `host_key` (\"ssh-ed25519 AAAA...\"): target keys are pinned"),
            );
            None
        }
    };
    let (Some(credential), Some(host_key), true) = (credential, host_key, ok) else {
        return None;
    };
    Some(SshTarget {
        name: name.clone(),
        address: conn.address.get_ref().clone(),
        user,
        credential,
        host_key,
        policy,
    })
}

pub(super) fn pg_target(
    c: &mut Checker<'_>,
    conn: &super::Connection,
    policies: &std::collections::BTreeMap<String, Spanned<super::Policy>>,
    sql_policy: Arc<SqlPolicy>,
) -> Option<PgTarget> {
    let strict_recording = policies
        .get(conn.policy.get_ref())
        .is_some_and(|p| *p.get_ref().recording.get_ref() == RecordingMode::Strict);
    let name = conn.name.get_ref();
    let mut ok = true;
    let mut required = |v: &Option<String>, key: &str, c: &mut Checker<'_>| match v {
        Some(v) => v.clone(),
        None => {
            c.problem(&conn.name, format!("connection {name:?} needs `{key}`"));
            ok = false;
            String::new()
        }
    };
    let database = required(&conn.database, "database", c);
    if conn.database.is_some() && database != *name {
        c.warn(
            &conn.name,
            format!(
                "connection {name:?} leads to database {database:?}: clients connect with \
                 dbname={name} while current_database() says {database}, and tools that compare \
                 the two (two-phase commit cleanup reading pg_prepared_xacts, migration and \
                 ORM tooling) find nothing; name the connection after its database where you can"
            ),
        );
    }
    let user = required(&conn.user, "user", c);
    let startup_options = match &conn.startup_options {
        None => gatehouse_actors::pg::options::DEFAULT_ALLOWED
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(list) => {
            for setting in list.get_ref() {
                if setting.is_empty()
                    || !setting
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_.".contains(ch))
                {
                    c.problem(
                        list,
                        format!(
                            "startup_options: {setting:?} is not a setting name (letters, digits, _ and .)"
                        ),
                    );
                    ok = false;
                }
            }
            list.get_ref().clone()
        }
    };
    if conn.address.get_ref().rsplit_once(':').is_none() {
        c.problem(&conn.address, "address must be host:port");
        ok = false;
    }
    let password = match &conn.password_file {
        None => None,
        Some(p) => match c.existing_file(p, "password_file") {
            None => {
                ok = false;
                None
            }
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']).to_owned())),
                Err(e) => {
                    c.problem(
                        p,
                        format!("password_file {} is unreadable: {e}", path.display()),
                    );
                    ok = false;
                    None
                }
            },
        },
    };
    let tls = match conn.tls.unwrap_or(TlsMode::VerifyFull) {
        TlsMode::Disable => TargetTls::Disable,
        TlsMode::Require => TargetTls::Require(Arc::new(crate::tls::no_verify_client_config())),
        TlsMode::VerifyFull => {
            let roots = match &conn.ca_file {
                Some(ca) => match c.existing_file(ca, "ca_file") {
                    Some(path) => match crate::tls::load_roots(&path) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            c.problem(ca, format!("ca_file: {e}"));
                            None
                        }
                    },
                    None => None,
                },
                None => Some(crate::tls::public_roots()),
            };
            match roots {
                Some(r) => TargetTls::VerifyFull(Arc::new(crate::tls::verifying_client_config(r))),
                None => {
                    ok = false;
                    TargetTls::Disable
                }
            }
        }
    };
    ok.then(|| PgTarget {
        name: name.clone(),
        address: conn.address.get_ref().clone(),
        database,
        user,
        password,
        tls,
        policy: conn.policy.get_ref().clone(),
        sql_policy,
        catalog: Default::default(),
        strict_recording,
        startup_options,
    })
}
