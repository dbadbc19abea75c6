//! SFTP version 3 packets (draft-ietf-secsh-filexfer-02, what OpenSSH
//! speaks), without I/O: a framer that cuts a byte stream into packets,
//! decoders for what the agent asks and what the target answers (only the
//! fields policy and the recording need), and the one packet the gateway
//! writes itself, a `STATUS`.

use std::fmt;

/// OpenSSH's `SFTP_MAX_MSG_LENGTH`: no packet of a real client or server
/// is longer; a longer one is refused rather than buffered.
pub const MAX_PACKET: usize = 256 * 1024;

pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_OPEN: u8 = 3;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_READ: u8 = 5;
pub const FXP_WRITE: u8 = 6;
pub const FXP_LSTAT: u8 = 7;
pub const FXP_FSTAT: u8 = 8;
pub const FXP_SETSTAT: u8 = 9;
pub const FXP_FSETSTAT: u8 = 10;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_READDIR: u8 = 12;
pub const FXP_REMOVE: u8 = 13;
pub const FXP_MKDIR: u8 = 14;
pub const FXP_RMDIR: u8 = 15;
pub const FXP_REALPATH: u8 = 16;
pub const FXP_STAT: u8 = 17;
pub const FXP_RENAME: u8 = 18;
pub const FXP_READLINK: u8 = 19;
pub const FXP_SYMLINK: u8 = 20;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_DATA: u8 = 103;
pub const FXP_NAME: u8 = 104;
pub const FXP_ATTRS: u8 = 105;
pub const FXP_EXTENDED: u8 = 200;
pub const FXP_EXTENDED_REPLY: u8 = 201;

pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_PERMISSION_DENIED: u32 = 3;

/// `SSH_FXF_*` open flags.
pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_APPEND: u32 = 0x04;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_TRUNC: u32 = 0x10;
pub const FXF_EXCL: u32 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftpError {
    /// A packet longer than [`MAX_PACKET`] (or of length 0).
    TooLong(usize),
    /// A packet whose fields do not fit its length.
    Malformed(&'static str),
}

impl fmt::Display for SftpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SftpError::TooLong(n) => write!(f, "SFTP packet of {n} bytes (limit {MAX_PACKET})"),
            SftpError::Malformed(what) => write!(f, "malformed SFTP packet: {what}"),
        }
    }
}

impl std::error::Error for SftpError {}

/// Cuts a byte stream into whole packets (length prefix included), keeping
/// an unfinished one until the rest arrives.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the next packet starts in `buf`: packets are copied out once,
    /// and the consumed front is dropped when more bytes arrive.
    start: usize,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, `None` when more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Vec<u8>>, SftpError> {
        let rest = &self.buf[self.start..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(SftpError::TooLong(len));
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let packet = rest[..4 + len].to_vec();
        self.start += 4 + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(packet))
    }

    /// Bytes held for an unfinished packet.
    pub fn held(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Reads the fields of one packet's body.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, SftpError> {
        let (&v, rest) = self
            .b
            .split_first()
            .ok_or(SftpError::Malformed("truncated"))?;
        self.b = rest;
        Ok(v)
    }

    fn u32(&mut self) -> Result<u32, SftpError> {
        if self.b.len() < 4 {
            return Err(SftpError::Malformed("truncated"));
        }
        let (v, rest) = self.b.split_at(4);
        self.b = rest;
        Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    fn u64(&mut self) -> Result<u64, SftpError> {
        let hi = self.u32()? as u64;
        Ok(hi << 32 | self.u32()? as u64)
    }

    fn bytes(&mut self) -> Result<&'a [u8], SftpError> {
        let len = self.u32()? as usize;
        if self.b.len() < len {
            return Err(SftpError::Malformed("string longer than its packet"));
        }
        let (v, rest) = self.b.split_at(len);
        self.b = rest;
        Ok(v)
    }

    /// A path or name: SFTP v3 paths are bytes; OpenSSH sends them as
    /// they are on disk. Invalid UTF-8 is shown with replacement
    /// characters (and, for policy, can match only `*` patterns).
    fn string(&mut self) -> Result<String, SftpError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

/// What the agent asks, as far as policy and the recording care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPacket {
    Init {
        version: u32,
    },
    Open {
        id: u32,
        path: String,
        flags: u32,
    },
    Close {
        id: u32,
        handle: Vec<u8>,
    },
    Read {
        id: u32,
        handle: Vec<u8>,
        offset: u64,
        len: u32,
    },
    /// `data` is the range of the packet holding the bytes written.
    Write {
        id: u32,
        handle: Vec<u8>,
        offset: u64,
        data: std::ops::Range<usize>,
    },
    /// Requests on a handle that policy does not judge again (`FSTAT`,
    /// `FSETSTAT`, `READDIR`).
    OnHandle {
        id: u32,
        kind: u8,
        handle: Vec<u8>,
    },
    /// Requests on one path: `LSTAT`, `SETSTAT`, `OPENDIR`, `REMOVE`,
    /// `MKDIR`, `RMDIR`, `REALPATH`, `STAT`, `READLINK`.
    OnPath {
        id: u32,
        kind: u8,
        path: String,
    },
    /// `RENAME` (from, to) and `SYMLINK` (both paths as sent; OpenSSH
    /// swaps the draft's order, so neither is assumed to be the link).
    TwoPaths {
        id: u32,
        kind: u8,
        a: String,
        b: String,
    },
    Extended {
        id: u32,
        name: String,
        body: std::ops::Range<usize>,
    },
    /// A type this gateway does not know.
    Unknown {
        id: Option<u32>,
        kind: u8,
    },
}

impl ClientPacket {
    /// The request id (`INIT` has none).
    pub fn id(&self) -> Option<u32> {
        match self {
            ClientPacket::Init { .. } => None,
            ClientPacket::Open { id, .. }
            | ClientPacket::Close { id, .. }
            | ClientPacket::Read { id, .. }
            | ClientPacket::Write { id, .. }
            | ClientPacket::OnHandle { id, .. }
            | ClientPacket::OnPath { id, .. }
            | ClientPacket::TwoPaths { id, .. }
            | ClientPacket::Extended { id, .. } => Some(*id),
            ClientPacket::Unknown { id, .. } => *id,
        }
    }

    /// Decode a whole packet from [`Framer::next_packet`].
    pub fn decode(packet: &[u8]) -> Result<ClientPacket, SftpError> {
        let mut r = Reader {
            b: packet.get(4..).unwrap_or_default(),
        };
        let kind = r.u8()?;
        if kind == FXP_INIT {
            return Ok(ClientPacket::Init { version: r.u32()? });
        }
        let id = r.u32();
        let Ok(id) = id else {
            return Ok(ClientPacket::Unknown { id: None, kind });
        };
        Ok(match kind {
            FXP_OPEN => ClientPacket::Open {
                id,
                path: r.string()?,
                flags: r.u32()?,
            },
            FXP_CLOSE => ClientPacket::Close {
                id,
                handle: r.bytes()?.to_vec(),
            },
            FXP_READ => ClientPacket::Read {
                id,
                handle: r.bytes()?.to_vec(),
                offset: r.u64()?,
                len: r.u32()?,
            },
            FXP_WRITE => {
                let handle = r.bytes()?.to_vec();
                let offset = r.u64()?;
                let data = r.bytes()?;
                let start = packet.len() - r.b.len() - data.len();
                ClientPacket::Write {
                    id,
                    handle,
                    offset,
                    data: start..start + data.len(),
                }
            }
            FXP_FSTAT | FXP_FSETSTAT | FXP_READDIR => ClientPacket::OnHandle {
                id,
                kind,
                handle: r.bytes()?.to_vec(),
            },
            FXP_LSTAT | FXP_SETSTAT | FXP_OPENDIR | FXP_REMOVE | FXP_MKDIR | FXP_RMDIR
            | FXP_REALPATH | FXP_STAT | FXP_READLINK => ClientPacket::OnPath {
                id,
                kind,
                path: r.string()?,
            },
            FXP_RENAME | FXP_SYMLINK => ClientPacket::TwoPaths {
                id,
                kind,
                a: r.string()?,
                b: r.string()?,
            },
            FXP_EXTENDED => {
                let name = r.string()?;
                let start = packet.len() - r.b.len();
                ClientPacket::Extended {
                    id,
                    name,
                    body: start..packet.len(),
                }
            }
            _ => ClientPacket::Unknown { id: Some(id), kind },
        })
    }
}

/// Paths an OpenSSH extended request names, and whether it writes to
/// them; `None` for an extension this gateway does not know.
pub fn extended_paths(name: &str, body: &[u8]) -> Option<Result<(Vec<String>, bool), SftpError>> {
    let mut r = Reader { b: body };
    let mut paths = |n: usize, write: bool| -> Result<(Vec<String>, bool), SftpError> {
        (0..n)
            .map(|_| r.string())
            .collect::<Result<Vec<_>, _>>()
            .map(|p| (p, write))
    };
    Some(match name {
        "posix-rename@openssh.com" | "hardlink@openssh.com" => paths(2, true),
        "lsetstat@openssh.com" => paths(1, true),
        "statvfs@openssh.com" | "expand-path@openssh.com" => paths(1, false),
        // Handles were judged when they were opened; these name no path.
        "fstatvfs@openssh.com"
        | "fsync@openssh.com"
        | "limits@openssh.com"
        | "copy-data"
        | "home-directory"
        | "users-groups-by-id@openssh.com" => Ok((Vec::new(), false)),
        _ => return None,
    })
}

/// What the target answers, as far as the recording cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPacket {
    Version {
        version: u32,
    },
    Status {
        id: u32,
        code: u32,
        message: String,
    },
    Handle {
        id: u32,
        handle: Vec<u8>,
    },
    /// `data` is the range of the packet holding the bytes read.
    Data {
        id: u32,
        data: std::ops::Range<usize>,
    },
    /// `NAME` with its entries' count and the first name (what `REALPATH`
    /// resolved to).
    Name {
        id: u32,
        count: u32,
        first: Option<String>,
    },
    Other {
        id: Option<u32>,
        kind: u8,
    },
}

impl ServerPacket {
    pub fn decode(packet: &[u8]) -> Result<ServerPacket, SftpError> {
        let mut r = Reader {
            b: packet.get(4..).unwrap_or_default(),
        };
        let kind = r.u8()?;
        if kind == FXP_VERSION {
            return Ok(ServerPacket::Version { version: r.u32()? });
        }
        let Ok(id) = r.u32() else {
            return Ok(ServerPacket::Other { id: None, kind });
        };
        Ok(match kind {
            FXP_STATUS => {
                let code = r.u32()?;
                // The message is optional in practice (v3 servers before
                // draft 02 leave it out).
                let message = r.string().unwrap_or_default();
                ServerPacket::Status { id, code, message }
            }
            FXP_HANDLE => ServerPacket::Handle {
                id,
                handle: r.bytes()?.to_vec(),
            },
            FXP_DATA => {
                let data = r.bytes()?;
                let start = packet.len() - r.b.len() - data.len();
                ServerPacket::Data {
                    id,
                    data: start..start + data.len(),
                }
            }
            FXP_NAME => {
                let count = r.u32()?;
                let first = if count > 0 { r.string().ok() } else { None };
                ServerPacket::Name { id, count, first }
            }
            _ => ServerPacket::Other { id: Some(id), kind },
        })
    }
}

/// A `STATUS` reply the gateway sends in the target's place.
pub fn status(id: u32, code: u32, message: &str) -> Vec<u8> {
    let body_len = 1 + 4 + 4 + 4 + message.len() + 4 + 2;
    let mut p = Vec::with_capacity(4 + body_len);
    p.extend_from_slice(&(body_len as u32).to_be_bytes());
    p.push(FXP_STATUS);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&(message.len() as u32).to_be_bytes());
    p.extend_from_slice(message.as_bytes());
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(b"en");
    p
}

/// The name of a `STATUS` code, as the recording shows a failure.
pub fn status_name(code: u32) -> &'static str {
    match code {
        0 => "ok",
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        _ => "error",
    }
}

/// Open flags as the recording shows them: `read,write,creat,trunc`.
pub fn flags_text(flags: u32) -> String {
    let names = [
        (FXF_READ, "read"),
        (FXF_WRITE, "write"),
        (FXF_APPEND, "append"),
        (FXF_CREAT, "creat"),
        (FXF_TRUNC, "trunc"),
        (FXF_EXCL, "excl"),
    ];
    let parts: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    parts.join(",")
}

/// Whether opening with these flags can change the file.
pub fn opens_for_writing(flags: u32) -> bool {
    flags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC) != 0
}

/// Packet builders for the SFTP tests.
#[cfg(test)]
pub(crate) mod build {
    pub fn packet(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = std::iter::once(kind)
            .chain(fields.iter().flat_map(|f| f.iter().copied()))
            .collect();
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend(body);
        p
    }

    pub fn s(text: &[u8]) -> Vec<u8> {
        let mut v = (text.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(text);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::build::{packet, s};
    use super::*;

    #[test]
    fn a_stream_cut_anywhere_gives_the_same_packets() {
        let open = packet(
            FXP_OPEN,
            &[
                &7u32.to_be_bytes(),
                &s(b"/etc/passwd"),
                &1u32.to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        );
        let remove = packet(FXP_REMOVE, &[&8u32.to_be_bytes(), &s(b"/tmp/x")]);
        let stream: Vec<u8> = open.iter().chain(remove.iter()).copied().collect();
        for cut in 0..=stream.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                f.push(piece);
                while let Some(p) = f.next_packet().unwrap() {
                    got.push(p);
                }
            }
            assert_eq!(got, vec![open.clone(), remove.clone()], "cut at {cut}");
            assert_eq!(f.held(), 0);
        }
        assert_eq!(
            ClientPacket::decode(&open).unwrap(),
            ClientPacket::Open {
                id: 7,
                path: "/etc/passwd".into(),
                flags: FXF_READ
            }
        );
        assert_eq!(
            ClientPacket::decode(&remove).unwrap(),
            ClientPacket::OnPath {
                id: 8,
                kind: FXP_REMOVE,
                path: "/tmp/x".into()
            }
        );
    }

    #[test]
    fn oversized_and_truncated_packets_are_errors() {
        let mut f = Framer::default();
        f.push(&((MAX_PACKET + 1) as u32).to_be_bytes());
        assert_eq!(f.next_packet(), Err(SftpError::TooLong(MAX_PACKET + 1)));
        let mut f = Framer::default();
        f.push(&0u32.to_be_bytes());
        assert!(f.next_packet().is_err());
        // A string claiming more bytes than the packet holds.
        let bad = packet(
            FXP_OPEN,
            &[&1u32.to_be_bytes(), &1000u32.to_be_bytes(), b"abc"],
        );
        assert!(ClientPacket::decode(&bad).is_err());
        let bad = packet(FXP_HANDLE, &[&1u32.to_be_bytes(), &9u32.to_be_bytes()]);
        assert!(ServerPacket::decode(&bad).is_err());
    }

    #[test]
    fn write_and_data_point_at_their_bytes() {
        let w = packet(
            FXP_WRITE,
            &[
                &3u32.to_be_bytes(),
                &s(b"h1"),
                &5u64.to_be_bytes(),
                &s(b"hello"),
            ],
        );
        let ClientPacket::Write {
            id,
            handle,
            offset,
            data,
        } = ClientPacket::decode(&w).unwrap()
        else {
            panic!("not a write");
        };
        assert_eq!(
            (id, handle.as_slice(), offset, &w[data]),
            (3, &b"h1"[..], 5, &b"hello"[..])
        );
        let d = packet(FXP_DATA, &[&4u32.to_be_bytes(), &s(b"world")]);
        let ServerPacket::Data { id, data } = ServerPacket::decode(&d).unwrap() else {
            panic!("not data");
        };
        assert_eq!((id, &d[data]), (4, &b"world"[..]));
    }

    #[test]
    fn the_gateways_status_decodes_as_a_server_would_send_it() {
        let p = status(9, FX_PERMISSION_DENIED, "no writes here");
        let mut f = Framer::default();
        f.push(&p);
        let whole = f.next_packet().unwrap().unwrap();
        assert_eq!(
            ServerPacket::decode(&whole).unwrap(),
            ServerPacket::Status {
                id: 9,
                code: FX_PERMISSION_DENIED,
                message: "no writes here".into()
            }
        );
    }

    #[test]
    fn known_extensions_name_their_paths() {
        let body: Vec<u8> = s(b"/a").into_iter().chain(s(b"/b")).collect();
        assert_eq!(
            extended_paths("posix-rename@openssh.com", &body),
            Some(Ok((vec!["/a".to_string(), "/b".to_string()], true)))
        );
        assert_eq!(extended_paths("something-new@example.com", &body), None);
        assert!(matches!(
            extended_paths("hardlink@openssh.com", &body[..6]),
            Some(Err(_))
        ));
    }
}
