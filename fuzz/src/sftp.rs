//! Target `sftp`: the SFTP filter of an SSH channel (`ssh::sftp`) fed an
//! agent's and a target's byte streams, interleaved and cut anywhere,
//! under a policy with a read-only tree (`/ro/*`) and a blocked name
//! (`/secret*`).
//!
//! The input is a sequence of pieces: one byte whose top bit says whose
//! bytes follow (0 the agent's, 1 the target's) and whose low 7 bits how
//! many (+1). Invariants:
//! - what reaches the target is whole packets that decode, and none of
//!   them, on an absolute path, is a request the rules refuse (a write in
//!   `/ro`, anything on `/secret*`), however the path is spelled (`..`,
//!   `//`, `.`); a request with a relative path under these rules goes
//!   only once the login directory is known (it was answered);
//! - what reaches the agent is whole packets, and every refusal is one
//!   `STATUS` with code 3;
//! - the filter keeps no more than one unfinished packet per direction;
//! - nothing panics; a malformed stream is an error, after which the
//!   channel closes (so the target stops here).

use gatehouse_actors::ssh::policy::{PathAccess, PathRule, SshPolicy, normalize_path};
use gatehouse_actors::ssh::sftp::SftpFilter;
use gatehouse_actors::ssh::sftp::codec::*;

fn policy() -> SshPolicy {
    let mut p = SshPolicy::allow_all("fuzz");
    p.paths = vec![
        PathRule {
            name: "ro".into(),
            paths: vec!["/ro/*".into()],
            access: PathAccess::ReadOnly,
            message: None,
        },
        PathRule {
            name: "secret".into(),
            paths: vec!["/secret*".into()],
            access: PathAccess::Block,
            message: None,
        },
    ];
    p
}

/// Cut a stream that must be whole packets; panics on a partial one.
fn packets(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut f = Framer::default();
    f.push(bytes);
    let mut out = Vec::new();
    while let Some(p) = f.next_packet().expect("forwarded bytes frame") {
        out.push(p);
    }
    assert_eq!(f.held(), 0, "a partial packet was forwarded");
    out
}

/// Would the rules refuse this request on an absolute path?
fn refused(policy: &SshPolicy, request: &ClientPacket) -> Option<String> {
    let judge = |path: &str, write: bool| -> Option<String> {
        if !path.starts_with('/') {
            return None;
        }
        let path = normalize_path(path);
        policy
            .judge_path(&path, write)
            .err()
            .map(|(rule, _)| format!("{rule} on {path}"))
    };
    match request {
        ClientPacket::Open { path, flags, .. } => judge(path, opens_for_writing(*flags)),
        ClientPacket::OnPath { kind, path, .. } => {
            let write = matches!(*kind, FXP_SETSTAT | FXP_REMOVE | FXP_MKDIR | FXP_RMDIR);
            judge(path, write)
        }
        ClientPacket::TwoPaths { a, b, .. } => judge(a, true).or_else(|| judge(b, true)),
        _ => None,
    }
}

pub fn check(data: &[u8]) {
    let policy = policy();
    let mut filter = SftpFilter::new();
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let n = ((head & 0x7f) as usize + 1).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        rest = tail;
        if head & 0x80 == 0 {
            let Ok(out) = filter.from_agent(&policy, piece) else {
                return;
            };
            for packet in packets(&out.forward) {
                let request = ClientPacket::decode(&packet).expect("a forwarded request decodes");
                if let Some(why) = refused(&policy, &request) {
                    panic!("forwarded a refused request ({why}): {request:?}");
                }
            }
            for reply in &out.replies {
                let p = packets(reply);
                assert_eq!(p.len(), 1);
                assert!(matches!(
                    ServerPacket::decode(&p[0]),
                    Ok(ServerPacket::Status {
                        code: FX_PERMISSION_DENIED,
                        ..
                    })
                ));
            }
            assert_eq!(out.replies.len(), out.refused.len());
        } else {
            let Ok(out) = filter.from_target(piece) else {
                return;
            };
            packets(&out.forward);
        }
    }
}
