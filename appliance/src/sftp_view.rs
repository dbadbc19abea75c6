//! `gatehouse recordings sftp-server`: the read-only SFTP view of the
//! recordings that the admin SSH endpoint starts for each SFTP session,
//! speaking SFTP on stdin/stdout (like OpenSSH's `sftp-server`).
//!
//! ```text
//! /recordings/                       one directory per day (UTC start date)
//! /recordings/2026-11-26/ID.jsonl    the session as JSON Lines (export --format jsonl)
//! /recordings/2026-11-26/ID.cast     an asciicast v2 replay (export --format asciicast)
//! /recordings/2026-11-26/ID.json     header, seal, and the verdict of verifying it now
//! ```
//!
//! Files are rendered from the store when opened or listed (sealed ones
//! are kept for the life of the session); every request that would change
//! anything is refused with `SSH_FX_PERMISSION_DENIED`. Each operation is
//! reported on stderr as one JSON object per line, which the endpoint
//! records as the operator's actions.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use gatehouse_actors::recording::{RecordingId, SessionHeader, format_time};
use gatehouse_actors::store::RecordingStore;
use gatehouse_actors::store::listing::Window;
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, FileMode, Handle, Name, OpenFlags, Status, StatusCode,
    Version,
};
use russh_sftp::server::StatusReply;

use crate::admin::SftpOp;
use crate::config::LoadedConfig;
use crate::recordings::{write_cast, write_jsonl, write_summary};

const READ_ONLY: &str = "the recordings view is read-only";
/// Rendered files kept per session before the cache starts over.
const CACHE_BYTES: usize = 256 << 20;
/// Largest read answered at once (OpenSSH asks for 32 KiB or less).
const MAX_READ: u32 = 256 << 10;
/// Directory entries per READDIR reply: a busy day has thousands of
/// files, and one reply must stay under the client's message limit
/// (OpenSSH: 256 KiB).
const ENTRIES_PER_REPLY: usize = 100;
/// Handles open at once in one session.
const MAX_HANDLES: usize = 64;

pub fn run(cfg: &LoadedConfig) -> anyhow::Result<()> {
    let store = crate::recordings::open(cfg)?;
    let public_key = crate::recordings::stored_public_key(cfg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the SFTP view")?;
    runtime.block_on(async move {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let view = View {
            store,
            public_key,
            handles: HashMap::new(),
            next_handle: 0,
            cache: HashMap::new(),
            cached_bytes: 0,
            _done: done_tx,
        };
        let stdio = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
        russh_sftp::server::run(stdio, view).await;
        // The protocol task drops the view when the client goes away.
        let _ = done_rx.await;
    });
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Format {
    Jsonl,
    Cast,
    Json,
}

impl Format {
    const ALL: [Format; 3] = [Format::Jsonl, Format::Cast, Format::Json];

    fn ext(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Cast => "cast",
            Format::Json => "json",
        }
    }
}

/// A path of the view.
enum Node {
    Root,
    Recordings,
    Day(String),
    File(Box<SessionHeader>, Format),
}

enum Open {
    Dir {
        entries: std::vec::IntoIter<File>,
    },
    File {
        path: String,
        data: Arc<Vec<u8>>,
        sent: u64,
    },
}

struct View {
    store: RecordingStore,
    public_key: Vec<u8>,
    handles: HashMap<String, Open>,
    next_handle: u64,
    cache: HashMap<(RecordingId, Format), Arc<Vec<u8>>>,
    cached_bytes: usize,
    /// Dropped with the view: tells `run` the session is over.
    _done: tokio::sync::oneshot::Sender<()>,
}

fn day(h: &SessionHeader) -> String {
    format_time(h.started_at)[..10].to_owned()
}

/// `path` as components, `.` and `..` resolved, relative to `/`.
fn components(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out
}

fn canonical(path: &str) -> String {
    format!("/{}", components(path).join("/"))
}

fn report(op: &str, path: &str, outcome: &str, bytes: u64) {
    let line = serde_json::to_string(&SftpOp {
        op: op.into(),
        path: path.into(),
        outcome: outcome.into(),
        bytes,
    })
    .unwrap_or_default();
    eprintln!("{line}");
}

fn failure(e: impl std::fmt::Display) -> StatusReply {
    StatusCode::Failure.with_message(e.to_string())
}

fn dir_attrs() -> FileAttributes {
    let mut a = FileAttributes::empty();
    a.permissions = Some(0o555 | FileMode::DIR.bits());
    a.uid = Some(0);
    a.gid = Some(0);
    a
}

/// `YYYY-MM-DD` as the window of that UTC day, if it is a date.
fn day_window(d: &str) -> Option<Window> {
    let date =
        time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    let from = date.midnight().assume_utc().unix_timestamp() * 1_000_000;
    Some(Window {
        from: Some(from),
        to: Some(from + 86_400_000_000),
    })
}

impl View {
    /// The sessions that started on day `d`: a key range, not a scan of
    /// every header.
    fn sessions_on(&self, d: &str) -> Result<Vec<SessionHeader>, StatusReply> {
        let Some(window) = day_window(d) else {
            return Ok(Vec::new());
        };
        self.store.sessions_between(window).map_err(failure)
    }

    fn node(&self, path: &str) -> Result<Node, StatusReply> {
        match components(path).as_slice() {
            [] => Ok(Node::Root),
            ["recordings"] => Ok(Node::Recordings),
            ["recordings", d] => {
                if !self.sessions_on(d)?.is_empty() {
                    Ok(Node::Day((*d).to_owned()))
                } else {
                    Err(StatusCode::NoSuchFile.into())
                }
            }
            ["recordings", d, name] => {
                let (id, ext) = name.rsplit_once('.').ok_or(StatusCode::NoSuchFile)?;
                let format = Format::ALL
                    .into_iter()
                    .find(|f| f.ext() == ext)
                    .ok_or(StatusCode::NoSuchFile)?;
                let id: RecordingId = id.parse().map_err(|_| StatusCode::NoSuchFile)?;
                let header = self.store.header(id).map_err(|_| StatusCode::NoSuchFile)?;
                if day(&header) != *d {
                    return Err(StatusCode::NoSuchFile.into());
                }
                Ok(Node::File(Box::new(header), format))
            }
            _ => Err(StatusCode::NoSuchFile.into()),
        }
    }

    /// A file's bytes; sealed sessions no longer change, so theirs are kept.
    fn render(&mut self, h: &SessionHeader, format: Format) -> Result<Arc<Vec<u8>>, StatusReply> {
        if let Some(data) = self.cache.get(&(h.id, format)) {
            return Ok(data.clone());
        }
        let mut out = Vec::new();
        match format {
            Format::Jsonl => write_jsonl(&self.store, h.id, &mut out),
            Format::Cast => write_cast(&self.store, h.id, &mut out),
            Format::Json => write_summary(&self.store, h.id, &self.public_key, &mut out),
        }
        .map_err(failure)?;
        let data = Arc::new(out);
        if h.outcome.is_some() {
            if self.cached_bytes + data.len() > CACHE_BYTES {
                self.cache.clear();
                self.cached_bytes = 0;
            }
            self.cached_bytes += data.len();
            self.cache.insert((h.id, format), data.clone());
        }
        Ok(data)
    }

    /// A node's attributes. A file's size needs the file rendered; a
    /// directory listing (`sized = false`) gives it only for files already
    /// rendered, so listing a busy day does not render every session.
    fn attrs(&mut self, node: &Node, sized: bool) -> Result<FileAttributes, StatusReply> {
        Ok(match node {
            Node::Root | Node::Recordings | Node::Day(_) => dir_attrs(),
            Node::File(h, format) => {
                let mut a = FileAttributes::empty();
                a.size = if sized {
                    Some(self.render(h, *format)?.len() as u64)
                } else {
                    self.cache.get(&(h.id, *format)).map(|d| d.len() as u64)
                };
                a.permissions = Some(0o444 | FileMode::REG.bits());
                a.uid = Some(0);
                a.gid = Some(0);
                let t = (h.ended_at.unwrap_or(h.started_at) / 1_000_000).max(0) as u32;
                a.atime = Some(t);
                a.mtime = Some(t);
                a
            }
        })
    }

    fn entries(&mut self, node: &Node) -> Result<Vec<File>, StatusReply> {
        let mut out = vec![File::new(".", dir_attrs()), File::new("..", dir_attrs())];
        match node {
            Node::Root => out.push(File::new("recordings", dir_attrs())),
            Node::Recordings => {
                let days = self.store.days().map_err(failure)?;
                out.extend(
                    days.into_iter()
                        .map(|d| File::new(&format_time(d)[..10], dir_attrs())),
                );
            }
            Node::Day(d) => {
                for h in self.sessions_on(d)? {
                    for format in Format::ALL {
                        let name = format!("{}.{}", h.id, format.ext());
                        let node = Node::File(Box::new(h.clone()), format);
                        out.push(File::new(name, self.attrs(&node, false)?));
                    }
                }
            }
            Node::File(..) => return Err(StatusCode::NoSuchFile.into()),
        }
        Ok(out)
    }

    fn handle(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusCode::Failure
                .with_message(format!("at most {MAX_HANDLES} open handles; close some")));
        }
        self.next_handle += 1;
        let h = self.next_handle.to_string();
        self.handles.insert(h.clone(), open);
        Ok(h)
    }

    fn refuse(&self, op: &str, path: &str) -> StatusReply {
        report(op, &canonical(path), "refused: read-only", 0);
        StatusCode::PermissionDenied.with_message(READ_ONLY)
    }
}

impl russh_sftp::server::Handler for View {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let path = canonical(&path);
        Ok(Name {
            id,
            files: vec![File::dummy(path)],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let node = self.node(&path)?;
        Ok(Attrs {
            id,
            attrs: self.attrs(&node, true)?,
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let node = self.node(&path)?;
        let entries = self.entries(&node)?;
        report("opendir", &canonical(&path), "ok", 0);
        Ok(Handle {
            id,
            handle: self.handle(Open::Dir {
                entries: entries.into_iter(),
            })?,
        })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Open::Dir { entries }) => {
                let files: Vec<File> = entries.by_ref().take(ENTRIES_PER_REPLY).collect();
                if files.is_empty() {
                    Err(StatusCode::Eof.into())
                } else {
                    Ok(Name { id, files })
                }
            }
            _ => Err(StatusCode::Failure.with_message("not a directory handle")),
        }
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        if pflags.intersects(
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        ) {
            return Err(self.refuse("open-for-write", &filename));
        }
        let path = canonical(&filename);
        let Node::File(h, format) = self.node(&filename)? else {
            return Err(StatusCode::Failure.with_message("is a directory"));
        };
        let data = self.render(&h, format)?;
        report("open", &path, "ok", 0);
        Ok(Handle {
            id,
            handle: self.handle(Open::File {
                path,
                data,
                sent: 0,
            })?,
        })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(Open::File { data, sent, .. }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("not a file handle"));
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if start >= data.len() {
            return Err(StatusCode::Eof.into());
        }
        let end = data.len().min(start + len.min(MAX_READ) as usize);
        *sent += (end - start) as u64;
        Ok(Data {
            id,
            data: data[start..end].to_vec(),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let path = match self.handles.get(&handle) {
            Some(Open::File { path, .. }) => path.clone(),
            Some(Open::Dir { .. }) => {
                return Ok(Attrs {
                    id,
                    attrs: dir_attrs(),
                });
            }
            None => return Err(StatusCode::Failure.with_message("unknown handle")),
        };
        self.stat(id, path).await
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        if let Some(Open::File { path, sent, .. }) = self.handles.remove(&handle) {
            report("read", &path, "ok", sent);
        }
        Ok(Status {
            id,
            status_code: StatusCode::Ok,
            error_message: "Ok".into(),
            language_tag: "en-US".into(),
        })
    }

    async fn write(
        &mut self,
        _id: u32,
        _handle: String,
        _offset: u64,
        _data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("write", "(handle)"))
    }

    async fn setstat(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("setstat", &path))
    }

    async fn fsetstat(
        &mut self,
        _id: u32,
        _handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("fsetstat", "(handle)"))
    }

    async fn remove(&mut self, _id: u32, filename: String) -> Result<Status, Self::Error> {
        Err(self.refuse("remove", &filename))
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("mkdir", &path))
    }

    async fn rmdir(&mut self, _id: u32, path: String) -> Result<Status, Self::Error> {
        Err(self.refuse("rmdir", &path))
    }

    async fn rename(
        &mut self,
        _id: u32,
        oldpath: String,
        _newpath: String,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("rename", &oldpath))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        linkpath: String,
        _targetpath: String,
    ) -> Result<Status, Self::Error> {
        Err(self.refuse("symlink", &linkpath))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_climb_out_of_the_view() {
        assert_eq!(canonical("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(canonical("."), "/");
        assert_eq!(
            canonical("recordings/./2026-11-26/"),
            "/recordings/2026-11-26"
        );
        assert_eq!(
            components("/recordings/../recordings/x"),
            ["recordings", "x"]
        );
    }
}
