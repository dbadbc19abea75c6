//! The SFTP conversation of one channel, followed packet by packet in both
//! directions: path rules judged before a request reaches the target, a
//! refused request answered in the target's place, and every file
//! operation turned into a record with its outcome, byte count and, for
//! files read or written in order, SHA-256.
//!
//! No I/O: the relay feeds bytes in and sends what comes out. Only whole
//! packets are forwarded, so a reply the gateway writes never lands inside
//! one of the target's.
//!
//! Relative paths are resolved against the login directory, which the
//! filter asks the target for itself (a `REALPATH "."` sent right after
//! the agent's `INIT`, answered before any of the agent's requests and
//! never shown to it), so a rule on `/srv/*` also holds for `../srv/x`.
//! Under path rules a relative path is refused while that directory is
//! unknown.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::codec::*;
use crate::ssh::policy::{SshPolicy, normalize_path};

/// The request id of the gateway's own `REALPATH "."`.
const PROBE_ID: u32 = u32::MAX;
/// Open handles followed at once; beyond, files are not hashed.
const MAX_HANDLES: usize = 4096;
/// Requests awaiting a reply that are followed at once; beyond, an
/// operation is recorded when sent, with outcome `sent`.
const MAX_PENDING: usize = 65_536;

/// One file operation, for the recording (`EventKind::FileOp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOp {
    pub op: String,
    pub path: String,
    pub to: Option<String>,
    pub flags: Option<String>,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub outcome: String,
}

impl FileOp {
    pub(crate) fn new(op: &str, path: &str) -> FileOp {
        FileOp {
            op: op.into(),
            path: path.into(),
            to: None,
            flags: None,
            bytes: 0,
            sha256: None,
            outcome: String::new(),
        }
    }
}

/// What the agent's bytes became.
#[derive(Debug, Default)]
pub struct FromAgent {
    /// Whole packets for the target.
    pub forward: Vec<u8>,
    /// Replies the gateway gives in the target's place (refusals).
    pub replies: Vec<Vec<u8>>,
    pub ops: Vec<FileOp>,
    /// A refusal for the log: (rule, message).
    pub refused: Vec<(String, String)>,
    /// Requests wait for the login directory (path rules need it): call
    /// [`SftpFilter::from_agent`] again, with no bytes, once
    /// [`SftpFilter::waiting`] is false.
    pub waiting: bool,
}

/// What the target's bytes became.
#[derive(Debug, Default)]
pub struct FromTarget {
    /// Whole packets for the agent.
    pub forward: Vec<u8>,
    pub ops: Vec<FileOp>,
}

struct OpenFile {
    path: String,
    flags: Option<u32>,
    bytes: u64,
    /// `None` once bytes were read or written out of order, or a write
    /// failed: the hash would not be the file's.
    hasher: Option<Sha256>,
    next: u64,
}

enum Pending {
    Open {
        path: String,
        flags: u32,
    },
    OpenDir {
        path: String,
    },
    Read {
        handle: Vec<u8>,
        offset: u64,
    },
    Write {
        handle: Vec<u8>,
    },
    Close {
        handle: Vec<u8>,
    },
    /// A path operation recorded with the reply's outcome.
    Op(FileOp),
    /// Replies that are not recorded (`FSTAT`, `READDIR`, ...).
    Quiet,
}

#[derive(Default)]
pub struct SftpFilter {
    up: Framer,
    down: Framer,
    /// Packets the agent sent before the `INIT` (none in a real client).
    initialised: bool,
    probe: bool,
    cwd: Option<String>,
    pending: HashMap<u32, Pending>,
    handles: HashMap<Vec<u8>, OpenFile>,
    /// Requests that arrived before the login directory was known, under
    /// path rules (at most one read of the agent's bytes: the relay reads
    /// no more until they are released).
    stash: Vec<Vec<u8>>,
    /// The login directory did not come in time; the answer is still
    /// swallowed if it comes later.
    gave_up: bool,
}

impl SftpFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The agent's bytes: whole packets judged and passed on, or refused.
    pub fn from_agent(&mut self, policy: &SshPolicy, bytes: &[u8]) -> Result<FromAgent, SftpError> {
        self.up.push(bytes);
        let mut out = FromAgent::default();
        let hold = |f: &Self| f.probe && !f.gave_up && policy.has_path_rules();
        if !hold(self) {
            for packet in std::mem::take(&mut self.stash) {
                self.request(policy, packet, &mut out)?;
            }
        }
        while let Some(packet) = self.up.next_packet()? {
            if hold(self) && self.initialised {
                self.stash.push(packet);
            } else {
                self.request(policy, packet, &mut out)?;
            }
        }
        out.waiting = !self.stash.is_empty();
        Ok(out)
    }

    /// Requests are held until the target says where the login directory
    /// is.
    pub fn waiting(&self) -> bool {
        self.probe && !self.gave_up && !self.stash.is_empty()
    }

    /// Stop waiting for the login directory (the target never answered):
    /// relative paths are then refused under path rules.
    pub fn give_up_waiting(&mut self) {
        self.gave_up = true;
    }

    /// The target's bytes: whole packets passed on, replies matched to
    /// their requests.
    pub fn from_target(&mut self, bytes: &[u8]) -> Result<FromTarget, SftpError> {
        self.down.push(bytes);
        let mut out = FromTarget::default();
        while let Some(packet) = self.down.next_packet()? {
            self.reply(packet, &mut out)?;
        }
        Ok(out)
    }

    /// A path as the target will read it: absolute and normalised.
    fn resolve(&self, policy: &SshPolicy, path: &str) -> Result<String, String> {
        if path.starts_with('/') {
            return Ok(normalize_path(path));
        }
        match &self.cwd {
            Some(cwd) => Ok(normalize_path(&format!("{cwd}/{path}"))),
            None if policy.has_path_rules() => Err(format!(
                "relative path {path:?} refused: the login directory is not known, and policy \"{}\" has path rules",
                policy.name
            )),
            None => Ok(path.to_owned()),
        }
    }

    /// Judge `paths` for this request; `Err((rule, message))` refuses it.
    fn judge(
        &self,
        policy: &SshPolicy,
        paths: &[&str],
        write: bool,
    ) -> Result<Vec<String>, (String, String)> {
        let mut resolved = Vec::with_capacity(paths.len());
        for p in paths {
            let path = self
                .resolve(policy, p)
                .map_err(|m| ("paths".to_owned(), m))?;
            policy.judge_path(&path, write)?;
            resolved.push(path);
        }
        Ok(resolved)
    }

    /// Judge an operation: its paths, then what path strings alone cannot
    /// show. Under path rules links are refused (a link reaches a
    /// protected path under another name), and a rename of (or onto) a
    /// directory that holds protected paths is refused (it would move or
    /// replace them).
    fn judge_op(
        &self,
        policy: &SshPolicy,
        op: &str,
        paths: &[&str],
        write: bool,
    ) -> Result<Vec<String>, (String, String)> {
        let resolved = self.judge(policy, paths, write)?;
        if !policy.has_path_rules() {
            return Ok(resolved);
        }
        match op {
            "symlink" | "hardlink" => Err((
                "paths".into(),
                format!(
                    "links are refused under policy \"{}\", which has path rules",
                    policy.name
                ),
            )),
            // Removing a file or an empty directory moves nothing a rule
            // protects; renaming a directory moves everything in it.
            "rename" => {
                for p in &resolved {
                    policy.guards_below(p, true, true)?;
                }
                Ok(resolved)
            }
            _ => Ok(resolved),
        }
    }

    fn expect(&mut self, id: u32, pending: Pending, out: &mut FromAgent) {
        if self.pending.len() >= MAX_PENDING {
            if let Pending::Op(mut op) = pending {
                op.outcome = "sent".into();
                out.ops.push(op);
            }
            return;
        }
        self.pending.insert(id, pending);
    }

    /// Answer a refused request in the target's place.
    fn refuse(
        &self,
        id: u32,
        mut op: FileOp,
        rule: String,
        message: String,
        out: &mut FromAgent,
    ) -> Result<(), SftpError> {
        out.replies.push(status(id, FX_PERMISSION_DENIED, &message));
        op.outcome = format!("denied: {rule}");
        out.ops.push(op);
        out.refused.push((rule, message));
        Ok(())
    }

    fn request(
        &mut self,
        policy: &SshPolicy,
        packet: Vec<u8>,
        out: &mut FromAgent,
    ) -> Result<(), SftpError> {
        let decoded = ClientPacket::decode(&packet)?;
        if !self.initialised && !matches!(decoded, ClientPacket::Init { .. }) {
            return Err(SftpError::Malformed("a request before INIT"));
        }
        // An id still in flight would hide one request's reply behind
        // another's (and the gateway's own question's id is its own).
        if let Some(id) = decoded.id()
            && (self.pending.contains_key(&id) || (self.probe && id == PROBE_ID))
        {
            return Err(SftpError::Malformed("a request id already in flight"));
        }
        match decoded {
            ClientPacket::Init { .. } => {
                if self.initialised {
                    return Err(SftpError::Malformed("a second INIT"));
                }
                self.initialised = true;
                out.forward.extend_from_slice(&packet);
                // Learn the login directory before the agent's first
                // request reaches the target.
                let mut probe = Vec::with_capacity(16);
                probe.extend_from_slice(&10u32.to_be_bytes());
                probe.push(FXP_REALPATH);
                probe.extend_from_slice(&PROBE_ID.to_be_bytes());
                probe.extend_from_slice(&1u32.to_be_bytes());
                probe.push(b'.');
                out.forward.extend_from_slice(&probe);
                self.probe = true;
                return Ok(());
            }
            ClientPacket::Open { id, path, flags } => {
                let write = opens_for_writing(flags);
                let mut op = FileOp::new("open", &path);
                op.flags = Some(flags_text(flags));
                match self.judge(policy, &[&path], write) {
                    Err((rule, m)) => return self.refuse(id, op, rule, m, out),
                    Ok(p) => self.expect(
                        id,
                        Pending::Open {
                            path: p[0].clone(),
                            flags,
                        },
                        out,
                    ),
                }
            }
            ClientPacket::Close { id, handle } => self.expect(id, Pending::Close { handle }, out),
            ClientPacket::Read {
                id, handle, offset, ..
            } => self.expect(id, Pending::Read { handle, offset }, out),
            ClientPacket::Write {
                id,
                handle,
                offset,
                data,
            } => {
                if let Some(f) = self.handles.get_mut(&handle) {
                    let bytes = &packet[data];
                    f.bytes += bytes.len() as u64;
                    match f.hasher.as_mut() {
                        Some(h) if f.next == offset => h.update(bytes),
                        _ => f.hasher = None,
                    }
                    f.next = offset.saturating_add(bytes.len() as u64);
                }
                self.expect(id, Pending::Write { handle }, out)
            }
            ClientPacket::OnHandle { id, kind, handle } => {
                // FSETSTAT changes the file behind a handle opened for
                // reading (its mode, owner, times): a write to that path.
                if kind == FXP_FSETSTAT && policy.has_path_rules() {
                    let op = FileOp::new("fsetstat", "");
                    match self.handles.get(&handle) {
                        Some(f) => {
                            let path = f.path.clone();
                            if let Err((rule, m)) = policy.judge_path(&path, true) {
                                let mut op = op;
                                op.path = path;
                                return self.refuse(id, op, rule, m, out);
                            }
                        }
                        None => {
                            let m = "setstat on a handle the gateway does not know".to_owned();
                            return self.refuse(id, op, "paths".into(), m, out);
                        }
                    }
                }
                self.expect(id, Pending::Quiet, out)
            }
            ClientPacket::OnPath { id, kind, path } => {
                let (name, write) = match kind {
                    FXP_LSTAT => ("lstat", false),
                    FXP_STAT => ("stat", false),
                    FXP_SETSTAT => ("setstat", true),
                    FXP_OPENDIR => ("opendir", false),
                    FXP_REMOVE => ("remove", true),
                    FXP_MKDIR => ("mkdir", true),
                    FXP_RMDIR => ("rmdir", true),
                    FXP_REALPATH => ("realpath", false),
                    _ => ("readlink", false),
                };
                let op = FileOp::new(name, &path);
                match self.judge_op(policy, name, &[&path], write) {
                    Err((rule, m)) => return self.refuse(id, op, rule, m, out),
                    Ok(p) if kind == FXP_OPENDIR => {
                        self.expect(id, Pending::OpenDir { path: p[0].clone() }, out)
                    }
                    Ok(p) => {
                        let mut op = op;
                        op.path = p[0].clone();
                        self.expect(id, Pending::Op(op), out)
                    }
                }
            }
            ClientPacket::TwoPaths { id, kind, a, b } => {
                let mut op = FileOp::new(
                    if kind == FXP_RENAME {
                        "rename"
                    } else {
                        "symlink"
                    },
                    &a,
                );
                op.to = Some(b.clone());
                let name = op.op.clone();
                match self.judge_op(policy, &name, &[&a, &b], true) {
                    Err((rule, m)) => return self.refuse(id, op, rule, m, out),
                    Ok(p) => {
                        op.path = p[0].clone();
                        op.to = Some(p[1].clone());
                        self.expect(id, Pending::Op(op), out)
                    }
                }
            }
            ClientPacket::Extended { id, name, body } => {
                let mut op = FileOp::new(extension_op(&name), "");
                match extended_paths(&name, &packet[body]) {
                    Some(Ok((paths, write))) => {
                        let names: Vec<&str> = paths.iter().map(String::as_str).collect();
                        op.path = paths.first().cloned().unwrap_or_default();
                        op.to = paths.get(1).cloned();
                        let name = op.op.clone();
                        match self.judge_op(policy, &name, &names, write) {
                            Err((rule, m)) => return self.refuse(id, op, rule, m, out),
                            Ok(p) => {
                                op.path = p.first().cloned().unwrap_or_default();
                                op.to = p.get(1).cloned();
                                self.expect(id, Pending::Op(op), out)
                            }
                        }
                    }
                    Some(Err(e)) => return Err(e),
                    None if policy.has_path_rules() => {
                        let m = format!(
                            "SFTP extension {name:?} refused: policy \"{}\" has path rules and the gateway cannot tell which paths it touches",
                            policy.name
                        );
                        return self.refuse(id, op, "paths".into(), m, out);
                    }
                    None => self.expect(id, Pending::Op(op), out),
                }
            }
            ClientPacket::Unknown { id, kind } => match id {
                Some(id) if policy.has_path_rules() => {
                    let m = format!("SFTP request type {kind} refused under path rules");
                    return self.refuse(id, FileOp::new("unknown", ""), "paths".into(), m, out);
                }
                Some(id) => self.expect(id, Pending::Quiet, out),
                None => return Err(SftpError::Malformed("a request without an id")),
            },
        }
        out.forward.extend_from_slice(&packet);
        Ok(())
    }

    fn reply(&mut self, packet: Vec<u8>, out: &mut FromTarget) -> Result<(), SftpError> {
        let decoded = ServerPacket::decode(&packet)?;
        let id = match &decoded {
            ServerPacket::Version { .. } => None,
            ServerPacket::Status { id, .. }
            | ServerPacket::Handle { id, .. }
            | ServerPacket::Data { id, .. }
            | ServerPacket::Name { id, .. } => Some(*id),
            ServerPacket::Other { id, .. } => *id,
        };
        if let ServerPacket::Version { version } = decoded
            && version != 3
        {
            // Later versions lay requests out differently: what this
            // filter reads would not be what the target does.
            return Err(SftpError::Malformed(
                "the target speaks an SFTP version other than 3",
            ));
        }
        if self.probe && id == Some(PROBE_ID) {
            // The gateway's own question: answered here, never forwarded.
            self.probe = false;
            if let ServerPacket::Name {
                first: Some(dir), ..
            } = decoded
                && dir.starts_with('/')
            {
                self.cwd = Some(normalize_path(&dir));
            }
            return Ok(());
        }
        if let Some(pending) = id.and_then(|id| self.pending.remove(&id)) {
            self.settle(pending, &decoded, &packet, out);
        }
        out.forward.extend_from_slice(&packet);
        Ok(())
    }

    fn settle(
        &mut self,
        pending: Pending,
        reply: &ServerPacket,
        packet: &[u8],
        out: &mut FromTarget,
    ) {
        let outcome = match reply {
            ServerPacket::Status { code, message, .. } if *code != FX_OK => {
                if message.is_empty() {
                    status_name(*code).to_owned()
                } else {
                    format!("{}: {}", status_name(*code), message.escape_debug())
                }
            }
            _ => "ok".to_owned(),
        };
        match pending {
            Pending::Open { path, flags } => {
                let mut op = FileOp::new("open", &path);
                op.flags = Some(flags_text(flags));
                op.outcome = outcome;
                out.ops.push(op);
                if let ServerPacket::Handle { handle, .. } = reply {
                    self.track(handle, path, Some(flags));
                }
            }
            Pending::OpenDir { path } => {
                let mut op = FileOp::new("opendir", &path);
                op.outcome = outcome;
                out.ops.push(op);
                if let ServerPacket::Handle { handle, .. } = reply {
                    self.track(handle, path, None);
                }
            }
            Pending::Read { handle, offset } => {
                if let (Some(f), ServerPacket::Data { data, .. }) =
                    (self.handles.get_mut(&handle), reply)
                {
                    let bytes = &packet[data.clone()];
                    f.bytes += bytes.len() as u64;
                    match f.hasher.as_mut() {
                        Some(h) if f.next == offset => h.update(bytes),
                        _ => f.hasher = None,
                    }
                    f.next = offset.saturating_add(bytes.len() as u64);
                }
            }
            Pending::Write { handle } => {
                if outcome != "ok"
                    && let Some(f) = self.handles.get_mut(&handle)
                {
                    f.hasher = None;
                }
            }
            Pending::Close { handle } => {
                if let Some(f) = self.handles.remove(&handle) {
                    let mut op = FileOp::new("close", &f.path);
                    op.flags = f.flags.map(flags_text);
                    op.bytes = f.bytes;
                    if f.flags.is_some() {
                        op.sha256 = f.hasher.map(|h| hex::encode(h.finalize()));
                    }
                    op.outcome = outcome;
                    out.ops.push(op);
                }
            }
            Pending::Op(mut op) => {
                if let (
                    ServerPacket::Name {
                        first: Some(name), ..
                    },
                    "realpath",
                ) = (reply, op.op.as_str())
                {
                    op.to = Some(name.clone());
                }
                op.outcome = outcome;
                out.ops.push(op);
            }
            Pending::Quiet => {}
        }
    }

    fn track(&mut self, handle: &[u8], path: String, flags: Option<u32>) {
        if self.handles.len() < MAX_HANDLES {
            self.handles.insert(
                handle.to_vec(),
                OpenFile {
                    path,
                    flags,
                    bytes: 0,
                    hasher: Some(Sha256::new()),
                    next: 0,
                },
            );
        }
    }
}

/// What an extension does, as the recording names it: OpenSSH's sftp
/// renames with `posix-rename@openssh.com`, for instance.
fn extension_op(name: &str) -> &str {
    match name {
        "posix-rename@openssh.com" => "rename",
        "hardlink@openssh.com" => "hardlink",
        "lsetstat@openssh.com" => "setstat",
        "statvfs@openssh.com" | "fstatvfs@openssh.com" => "statvfs",
        "expand-path@openssh.com" => "realpath",
        "fsync@openssh.com" => "fsync",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::build::{packet, s};
    use super::*;
    use crate::ssh::policy::{PathAccess, PathRule};

    fn id(n: u32) -> [u8; 4] {
        n.to_be_bytes()
    }

    /// The target's answer to the gateway's `REALPATH "."`.
    fn login_dir_answer() -> Vec<u8> {
        packet(
            FXP_NAME,
            &[
                &id(PROBE_ID),
                &1u32.to_be_bytes(),
                &s(b"/home/agent"),
                &s(b""),
                &0u32.to_be_bytes(),
            ],
        )
    }

    fn policy() -> SshPolicy {
        let mut p = SshPolicy::allow_all("files");
        p.paths = vec![
            PathRule {
                name: "etc".into(),
                paths: vec!["/etc/*".into()],
                access: PathAccess::ReadOnly,
                message: None,
            },
            PathRule {
                name: "secrets".into(),
                paths: vec!["/home/agent/secret*".into()],
                access: PathAccess::Block,
                message: Some("no secrets".into()),
            },
        ];
        p
    }

    /// A filter past INIT/VERSION whose login directory is `/home/agent`.
    fn started(policy: &SshPolicy) -> SftpFilter {
        let mut f = SftpFilter::new();
        let out = f
            .from_agent(policy, &packet(FXP_INIT, &[&3u32.to_be_bytes()]))
            .unwrap();
        assert!(
            out.forward
                .ends_with(&packet(FXP_REALPATH, &[&id(PROBE_ID), &s(b".")]))
        );
        let version = packet(FXP_VERSION, &[&3u32.to_be_bytes()]);
        let name = login_dir_answer();
        let down = f.from_target(&[version.clone(), name].concat()).unwrap();
        assert_eq!(
            down.forward, version,
            "the probe's answer is not shown to the agent"
        );
        f
    }

    #[test]
    fn a_write_under_a_read_only_rule_is_answered_permission_denied() {
        let p = policy();
        let mut f = started(&p);
        let open = packet(
            FXP_OPEN,
            &[
                &id(1),
                &s(b"/etc/../etc//hosts"),
                &(FXF_WRITE | FXF_CREAT).to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        );
        let out = f.from_agent(&p, &open).unwrap();
        assert!(
            out.forward.is_empty(),
            "the request never reaches the target"
        );
        assert_eq!(
            out.replies,
            vec![status(1, FX_PERMISSION_DENIED, "/etc/hosts is read-only")]
        );
        assert_eq!(out.ops[0].outcome, "denied: etc");
        // Reading is allowed, and a relative path is judged where it lands.
        let read = packet(
            FXP_OPEN,
            &[
                &id(2),
                &s(b"/etc/hosts"),
                &FXF_READ.to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        );
        assert_eq!(f.from_agent(&p, &read).unwrap().forward, read);
        let sneaky = packet(FXP_REMOVE, &[&id(3), &s(b"../agent/secret.txt")]);
        let out = f.from_agent(&p, &sneaky).unwrap();
        assert!(out.forward.is_empty());
        assert_eq!(
            out.replies,
            vec![status(3, FX_PERMISSION_DENIED, "no secrets")]
        );
        assert_eq!(out.ops[0].path, "../agent/secret.txt");
        // Both ends of a rename are judged.
        let rename = packet(FXP_RENAME, &[&id(4), &s(b"/tmp/a"), &s(b"/etc/a")]);
        assert!(f.from_agent(&p, &rename).unwrap().forward.is_empty());
    }

    #[test]
    fn relative_paths_are_refused_under_rules_when_the_login_directory_stays_unknown() {
        let p = policy();
        let mut f = SftpFilter::new();
        f.from_agent(&p, &packet(FXP_INIT, &[&3u32.to_be_bytes()]))
            .unwrap();
        let out = f
            .from_agent(&p, &packet(FXP_STAT, &[&id(1), &s(b"x")]))
            .unwrap();
        assert!(out.waiting && out.forward.is_empty());
        // The target never answers the gateway's question.
        f.give_up_waiting();
        let out = f.from_agent(&p, &[]).unwrap();
        assert!(out.forward.is_empty());
        assert_eq!(out.ops[0].outcome, "denied: paths");
        // Without rules it passes as sent.
        let open = SshPolicy::allow_all("open");
        let mut f = SftpFilter::new();
        f.from_agent(&open, &packet(FXP_INIT, &[&3u32.to_be_bytes()]))
            .unwrap();
        let stat = packet(FXP_STAT, &[&id(1), &s(b"x")]);
        assert_eq!(f.from_agent(&open, &stat).unwrap().forward, stat);
    }

    #[test]
    fn a_file_written_in_order_is_recorded_with_its_size_and_hash() {
        let p = policy();
        let mut f = started(&p);
        let open = packet(
            FXP_OPEN,
            &[
                &id(1),
                &s(b"up.txt"),
                &(FXF_WRITE | FXF_CREAT | FXF_TRUNC).to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        );
        f.from_agent(&p, &open).unwrap();
        let down = f
            .from_target(&packet(FXP_HANDLE, &[&id(1), &s(b"h0")]))
            .unwrap();
        assert_eq!(down.ops[0].path, "/home/agent/up.txt");
        assert_eq!(down.ops[0].flags.as_deref(), Some("write,creat,trunc"));
        // Two writes, the second split across two reads of the stream.
        let w1 = packet(
            FXP_WRITE,
            &[&id(2), &s(b"h0"), &0u64.to_be_bytes(), &s(b"hello ")],
        );
        let w2 = packet(
            FXP_WRITE,
            &[&id(3), &s(b"h0"), &6u64.to_be_bytes(), &s(b"world")],
        );
        let stream = [w1, w2].concat();
        let (a, b) = stream.split_at(40);
        assert_eq!(
            f.from_agent(&p, a).unwrap().forward.len(),
            4 + 1 + 4 + 6 + 8 + 10
        );
        f.from_agent(&p, b).unwrap();
        let ok = |n| {
            packet(
                FXP_STATUS,
                &[&id(n), &FX_OK.to_be_bytes(), &s(b""), &s(b"")],
            )
        };
        f.from_target(&[ok(2), ok(3)].concat()).unwrap();
        f.from_agent(&p, &packet(FXP_CLOSE, &[&id(4), &s(b"h0")]))
            .unwrap();
        let closed = f.from_target(&ok(4)).unwrap().ops.pop().unwrap();
        assert_eq!((closed.op.as_str(), closed.bytes), ("close", 11));
        assert_eq!(
            closed.sha256.as_deref(),
            Some("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"),
            "sha256(\"hello world\")"
        );
    }

    #[test]
    fn out_of_order_reads_are_counted_but_not_hashed() {
        let p = SshPolicy::allow_all("open");
        let mut f = started(&p);
        f.from_agent(
            &p,
            &packet(
                FXP_OPEN,
                &[
                    &id(1),
                    &s(b"/f"),
                    &FXF_READ.to_be_bytes(),
                    &0u32.to_be_bytes(),
                ],
            ),
        )
        .unwrap();
        f.from_target(&packet(FXP_HANDLE, &[&id(1), &s(b"h")]))
            .unwrap();
        f.from_agent(
            &p,
            &packet(
                FXP_READ,
                &[&id(2), &s(b"h"), &4u64.to_be_bytes(), &4u32.to_be_bytes()],
            ),
        )
        .unwrap();
        f.from_target(&packet(FXP_DATA, &[&id(2), &s(b"abcd")]))
            .unwrap();
        f.from_agent(&p, &packet(FXP_CLOSE, &[&id(3), &s(b"h")]))
            .unwrap();
        let ok = packet(
            FXP_STATUS,
            &[&id(3), &FX_OK.to_be_bytes(), &s(b""), &s(b"")],
        );
        let closed = f.from_target(&ok).unwrap().ops.pop().unwrap();
        assert_eq!((closed.bytes, closed.sha256), (4, None));
    }

    #[test]
    fn links_renames_of_protecting_directories_and_fsetstat_are_refused() {
        let p = policy();
        let mut f = started(&p);
        let link = packet(FXP_SYMLINK, &[&id(1), &s(b"/"), &s(b"/tmp/r")]);
        assert!(
            f.from_agent(&p, &link).unwrap().forward.is_empty(),
            "a link to /"
        );
        let rename = packet(FXP_RENAME, &[&id(2), &s(b"/home/agent"), &s(b"/tmp/x")]);
        let out = f.from_agent(&p, &rename).unwrap();
        assert!(
            out.forward.is_empty(),
            "renaming a directory that holds protected paths"
        );
        let rename = packet(FXP_RENAME, &[&id(3), &s(b"/tmp/new"), &s(b"/home")]);
        assert!(
            f.from_agent(&p, &rename).unwrap().forward.is_empty(),
            "renaming onto a directory a wildcard pattern reaches below"
        );
        // A plain rename elsewhere passes.
        let ok = packet(FXP_RENAME, &[&id(4), &s(b"/tmp/a"), &s(b"/tmp/b")]);
        assert_eq!(f.from_agent(&p, &ok).unwrap().forward, ok);
        // FSETSTAT on a read-only file opened for reading.
        let open = packet(
            FXP_OPEN,
            &[
                &id(5),
                &s(b"/etc/hosts"),
                &FXF_READ.to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        );
        f.from_agent(&p, &open).unwrap();
        f.from_target(&packet(FXP_HANDLE, &[&id(5), &s(b"h")]))
            .unwrap();
        let chmod = packet(
            FXP_FSETSTAT,
            &[
                &id(6),
                &s(b"h"),
                &4u32.to_be_bytes(),
                &0o777u32.to_be_bytes(),
            ],
        );
        assert!(f.from_agent(&p, &chmod).unwrap().forward.is_empty());
        // An id still in flight (4 was never answered) ends the channel.
        let again = packet(FXP_STAT, &[&id(4), &s(b"/tmp")]);
        assert!(f.from_agent(&p, &again).is_err());
    }

    #[test]
    fn requests_wait_for_the_login_directory_under_rules() {
        let p = policy();
        let mut f = SftpFilter::new();
        f.from_agent(&p, &packet(FXP_INIT, &[&3u32.to_be_bytes()]))
            .unwrap();
        let dot = packet(FXP_REALPATH, &[&id(1), &s(b".")]);
        let out = f.from_agent(&p, &dot).unwrap();
        assert!(out.waiting && out.forward.is_empty() && out.replies.is_empty());
        let version = packet(FXP_VERSION, &[&3u32.to_be_bytes()]);
        let name = login_dir_answer();
        f.from_target(&[version, name].concat()).unwrap();
        assert!(!f.waiting());
        let out = f.from_agent(&p, &[]).unwrap();
        assert_eq!(out.forward, dot, "released once the directory is known");
    }

    #[test]
    fn unknown_extensions_and_versions_fail_closed() {
        let p = policy();
        let mut f = started(&p);
        let ext = packet(
            FXP_EXTENDED,
            &[&id(1), &s(b"new-thing@example.com"), &s(b"/etc/x")],
        );
        let out = f.from_agent(&p, &ext).unwrap();
        assert!(out.forward.is_empty());
        assert_eq!(out.replies.len(), 1);
        let mut f = SftpFilter::new();
        f.from_agent(&p, &packet(FXP_INIT, &[&6u32.to_be_bytes()]))
            .unwrap();
        assert!(
            f.from_target(&packet(FXP_VERSION, &[&6u32.to_be_bytes()]))
                .is_err()
        );
        let mut f = SftpFilter::new();
        assert!(
            f.from_agent(&p, &packet(FXP_STAT, &[&id(1), &s(b"/x")]))
                .is_err(),
            "a request before INIT"
        );
    }
}
