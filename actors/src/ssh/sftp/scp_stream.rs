//! The legacy scp protocol's stream, read to record each file a transfer
//! carries: its path, size and SHA-256.
//!
//! Both sides are read and nothing is changed. The source — the agent for
//! an upload (`scp -t`), the target for a download (`scp -f`) — sends
//! control lines and file contents; the receiver answers each record and
//! each file with `\0`, or with an error line when it refused the record
//! or could not write the file. A file is recorded `ok` only once the
//! receiver confirmed it. A refused record makes the source skip what it
//! announced, so the stream is no longer followed from there (recorded
//! once as such): a receiver's refusal cannot make later contents pass
//! for another file. The source sends:
//!
//! - `C<mode> <size> <name>\n`, then `size` bytes, then `\0` (or an error
//!   line when reading the file failed);
//! - `D<mode> 0 <name>\n` enters a directory, `E\n` leaves it (`-r`);
//! - `T<mtime> 0 <atime> 0\n` times for the next record (`-p`);
//! - `\x01message\n` (warning) or `\x02message\n` (error).
//!
//! Paths as recorded: a download's top-level records are the paths the
//! command named, in order (scp sends them in that order, an error line
//! in place of one it could not read). An upload's target is one path,
//! and whether it is a directory only the target knows: with `-d`
//! (several files) or a trailing `/` it is one, and each record lands
//! inside it under the name the stream carries. Otherwise a file is
//! recorded at the named path and a directory (`-r`) inside it (the usual
//! cases: `scp f host:/etc/f`, `scp -r d host:/srv`), and `flags` says
//! where it went in the other case. Records inside a directory join their
//! parent's path; `flags` always carries the mode and the name sent.
//!
//! A stream that stops making sense (an unknown record, a name with `/`, a
//! line longer than a path can be) is no longer followed: one record says
//! so, and the bytes still pass (path rules were judged on the command
//! line before anything ran).

use sha2::{Digest, Sha256};

use super::FileOp;
use super::scp::{ScpCommand, ScpDirection};

/// The prefix of a download's record that no named path accounts for.
pub const UNASKED: &str = "(not asked for) ";

/// Longer control lines are not scp's (a name is at most PATH_MAX).
const MAX_LINE: usize = 4096 + 64;

/// Deeper trees, or longer paths, are not followed (a path is at most
/// PATH_MAX; the depth keeps the directory stack small).
const MAX_DEPTH: usize = 64;
const MAX_PATH: usize = 4096;

/// Answers owed by the receiver, oldest first, beyond which the stream is
/// not followed (an honest source waits for each).
const MAX_OWED: usize = 64;

enum State {
    /// Collecting a control line.
    Line(Vec<u8>),
    /// File contents: bytes still to come.
    Data {
        file: FileOp,
        left: u64,
        hash: Sha256,
    },
    /// After a file's contents: the source's `\0`, or an error.
    Ack(FileOp, String),
    /// The source could not read the file: its error line.
    AckError(FileOp, Vec<u8>),
    /// The stream is no longer followed.
    Lost,
}

/// What a receiver's answer confirms.
enum Owed {
    /// A record (or the start): nothing to write down.
    Record,
    /// A file whose contents passed: recorded when the receiver confirms.
    File(FileOp),
}

pub struct ScpStream {
    direction: ScpDirection,
    paths: Vec<String>,
    /// `-d`: the upload's target is a directory.
    into_dir: bool,
    /// Paths of the directories entered (`D` records).
    dirs: Vec<String>,
    /// Where the files of the tree being sent went instead if the upload's
    /// path was not a directory.
    otherwise: Option<(String, String)>,
    /// A download's top-level records used so far.
    used: usize,
    state: State,
    /// Answers the receiver owes, oldest first.
    owed: std::collections::VecDeque<Owed>,
    /// A receiver's error line being read.
    refusal: Option<Vec<u8>>,
    /// The stream is no longer followed (the state is `Lost` too, except
    /// while `feed` holds it).
    lost: bool,
    done: Vec<FileOp>,
}

impl ScpStream {
    pub fn new(command: &ScpCommand) -> ScpStream {
        ScpStream {
            direction: command.direction,
            paths: command.paths.clone(),
            into_dir: command.into_dir,
            dirs: Vec::new(),
            otherwise: None,
            used: 0,
            state: State::Line(Vec::new()),
            // The receiver speaks first: `\0` when it is ready.
            owed: std::collections::VecDeque::from([Owed::Record]),
            refusal: None,
            lost: false,
            done: Vec::new(),
        }
    }

    /// Answers the receiver owes so far.
    pub fn owed(&self) -> usize {
        self.owed.len()
    }

    fn owe(&mut self, what: Owed) {
        if self.owed.len() >= MAX_OWED {
            return self.lose("the source ran ahead of the receiver's answers");
        }
        self.owed.push_back(what);
    }

    /// Follow the receiver's answers; returns the files it confirmed.
    pub fn answer(&mut self, data: &[u8]) -> Vec<FileOp> {
        for &b in data {
            if self.lost {
                break;
            }
            if let Some(line) = self.refusal.as_mut() {
                if b != b'\n' && line.len() < MAX_LINE {
                    line.push(b);
                    continue;
                }
                let line = self.refusal.take().unwrap_or_default();
                let why = String::from_utf8_lossy(&line).trim().to_owned();
                match self.owed.pop_front() {
                    // A write that failed: the source goes on with the
                    // next record, so the stream is still followed.
                    Some(Owed::File(mut f)) => {
                        f.outcome = format!("failed: the receiver: {why}");
                        self.done.push(f);
                    }
                    _ => self.lose(&format!("the receiver refused a record ({why})")),
                }
                continue;
            }
            match b {
                0 => match self.owed.pop_front() {
                    Some(Owed::File(mut f)) => {
                        f.outcome = "ok".into();
                        self.done.push(f);
                    }
                    Some(Owed::Record) => {}
                    None => self.lose("the receiver answered what was not sent"),
                },
                1 | 2 => self.refusal = Some(Vec::new()),
                _ => self.lose("the receiver sent what scp does not"),
            }
        }
        std::mem::take(&mut self.done)
    }

    /// Which way the files go (whose bytes to feed).
    pub fn direction(&self) -> ScpDirection {
        self.direction
    }

    fn op(&self) -> &'static str {
        match self.direction {
            ScpDirection::Upload => "upload",
            ScpDirection::Download => "download",
        }
    }

    /// Follow the source's bytes; returns the files finished so far.
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<FileOp> {
        while !data.is_empty() {
            data = match std::mem::replace(&mut self.state, State::Lost) {
                State::Lost => {
                    self.state = State::Lost;
                    &[]
                }
                State::Data {
                    file,
                    left,
                    mut hash,
                } => {
                    let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    hash.update(&data[..n]);
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        let digest = hex::encode(hash.finalize());
                        State::Ack(file, digest)
                    } else {
                        State::Data { file, left, hash }
                    };
                    &data[n..]
                }
                State::Ack(mut file, digest) => {
                    self.state = State::Line(Vec::new());
                    if data[0] == 0 {
                        file.sha256 = Some(digest);
                        self.owe(Owed::File(file));
                    } else {
                        // Reading the file failed part way: what was sent
                        // is not the file; the error line says why.
                        self.state = State::AckError(file, Vec::new());
                    }
                    &data[1..]
                }
                State::AckError(mut file, mut line) => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |i| i + 1);
                    if line.len() < MAX_LINE {
                        line.extend_from_slice(&data[..take.min(MAX_LINE)]);
                    }
                    if end.is_some() {
                        let why = String::from_utf8_lossy(&line).trim().to_owned();
                        file.outcome = format!("failed: the source could not read it ({why})");
                        self.done.push(file);
                        self.state = State::Line(Vec::new());
                        // The receiver still answers the file.
                        self.owe(Owed::Record);
                    } else {
                        self.state = State::AckError(file, line);
                    }
                    &data[take..]
                }
                State::Line(mut line) => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |i| i + 1);
                    if line.len() + take > MAX_LINE {
                        self.lose("a control line longer than a path");
                        return std::mem::take(&mut self.done);
                    }
                    line.extend_from_slice(&data[..take]);
                    if end.is_some() {
                        self.state = State::Line(Vec::new());
                        line.pop();
                        self.control(&line);
                        if self.lost {
                            return std::mem::take(&mut self.done);
                        }
                    } else {
                        self.state = State::Line(line);
                    }
                    &data[take..]
                }
            };
        }
        std::mem::take(&mut self.done)
    }

    /// The stream ended: a file cut short, or never confirmed, is recorded
    /// as such.
    pub fn finish(&mut self) -> Vec<FileOp> {
        match std::mem::replace(&mut self.state, State::Lost) {
            State::Data { mut file, left, .. } => {
                file.outcome = format!("incomplete: {left} bytes missing");
                self.done.push(file);
            }
            State::Ack(mut file, _) | State::AckError(mut file, _) => {
                file.outcome = "incomplete: not confirmed by the source".into();
                self.done.push(file);
            }
            State::Line(_) | State::Lost => {}
        }
        self.unconfirmed("incomplete: not confirmed by the receiver");
        std::mem::take(&mut self.done)
    }

    /// Files still waiting for the receiver, recorded with `outcome`.
    fn unconfirmed(&mut self, outcome: &str) {
        for owed in std::mem::take(&mut self.owed) {
            if let Owed::File(mut f) = owed {
                f.outcome = outcome.into();
                self.done.push(f);
            }
        }
    }

    fn lose(&mut self, why: &str) {
        if self.lost {
            return;
        }
        self.lost = true;
        self.unconfirmed("not confirmed by the receiver");
        let path = self.paths.first().cloned().unwrap_or_default();
        let mut op = FileOp::new(self.op(), &path);
        op.outcome = format!("not followed: {why}");
        self.done.push(op);
        self.state = State::Lost;
        self.refusal = None;
    }

    /// Where a record named `name` at the current depth lands, and where
    /// else it may have gone (an upload's path that may not have been a
    /// directory).
    fn place(&mut self, name: &str, dir: bool) -> (String, Option<String>) {
        if let Some(parent) = self.dirs.last() {
            let path = join(parent, name);
            let other = self
                .otherwise
                .as_ref()
                .map(|(inside, instead)| format!("{instead}{}", &path[inside.len()..]));
            return (path, other);
        }
        self.otherwise = None;
        match self.direction {
            ScpDirection::Upload => {
                let base = self.paths.first().cloned().unwrap_or_default();
                let inside = join(&base, name);
                if self.into_dir || base.ends_with('/') {
                    (inside, None)
                } else if dir {
                    self.otherwise = Some((inside.clone(), base.clone()));
                    (inside, Some(base))
                } else {
                    (base, Some(inside))
                }
            }
            ScpDirection::Download => {
                // More records than paths asked for: the target sent what
                // nobody named (scp's own client refuses such files).
                let path = match self.paths.get(self.used) {
                    Some(p) => p.clone(),
                    None => format!("{UNASKED}{name}"),
                };
                self.used += 1;
                (path, None)
            }
        }
    }

    fn control(&mut self, line: &[u8]) {
        let Some((&kind, rest)) = line.split_first() else {
            return self.lose("an empty control line");
        };
        match kind {
            b'C' | b'D' => {
                let Some((mode, size, name)) = record(rest) else {
                    return self.lose("a record scp does not send");
                };
                let (path, other) = self.place(&name, kind == b'D');
                if path.len() > MAX_PATH || self.dirs.len() >= MAX_DEPTH {
                    return self.lose("a tree deeper or a path longer than a file system holds");
                }
                self.owe(Owed::Record);
                if self.lost {
                    return;
                }
                if kind == b'D' {
                    self.dirs.push(path);
                    return;
                }
                let mut file = FileOp::new(self.op(), &path);
                file.bytes = size;
                file.flags = Some(match other {
                    None => format!("mode {mode}, sent as {name}"),
                    Some(other) => format!(
                        "mode {mode}, sent as {name}; written to {other} if the target path {}",
                        if other.len() > path.len() {
                            "was a directory"
                        } else {
                            "did not exist"
                        }
                    ),
                });
                self.state = if size == 0 {
                    State::Ack(file, hex::encode(Sha256::new().finalize()))
                } else {
                    State::Data {
                        file,
                        left: size,
                        hash: Sha256::new(),
                    }
                };
            }
            b'E' => {
                if self.dirs.pop().is_none() {
                    return self.lose("a directory left that was not entered");
                }
                self.owe(Owed::Record);
            }
            b'T' => self.owe(Owed::Record),
            1 | 2 => {
                // The source could not send a path it was asked for.
                if self.direction == ScpDirection::Download && self.dirs.is_empty() {
                    let (path, _) = self.place("", false);
                    let mut op = FileOp::new(self.op(), &path);
                    op.outcome = format!("failed: {}", String::from_utf8_lossy(rest).trim());
                    self.done.push(op);
                }
            }
            _ => self.lose("a record scp does not send"),
        }
    }
}

/// `<mode> <size> <name>` of a `C` or `D` record; the name must be one
/// path component, as scp's own sink demands.
fn record(rest: &[u8]) -> Option<(String, u64, String)> {
    let text = std::str::from_utf8(rest).ok()?;
    let mut parts = text.splitn(3, ' ');
    let mode = parts.next()?;
    let size = parts.next()?.parse::<u64>().ok()?;
    let name = parts.next()?;
    let valid_mode = mode.len() == 4 && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if !valid_mode || name.is_empty() || name.contains('/') || name == ".." || name == "." {
        return None;
    }
    Some((mode.to_owned(), size, name.to_owned()))
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn upload(paths: &[&str], into_dir: bool) -> ScpStream {
        ScpStream::new(&ScpCommand {
            direction: ScpDirection::Upload,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            recursive: false,
            into_dir,
        })
    }

    /// Each recorded file's path and outcome.
    fn outcomes(done: &[FileOp]) -> Vec<(&str, &str)> {
        done.iter()
            .map(|f| (f.path.as_str(), f.outcome.as_str()))
            .collect()
    }

    /// Source bytes, then the receiver accepting everything owed.
    fn pass(s: &mut ScpStream, data: &[u8]) -> Vec<FileOp> {
        let mut done = s.feed(data);
        let acks = vec![0u8; s.owed()];
        done.extend(s.answer(&acks));
        done
    }

    #[test]
    fn files_are_recorded_with_size_and_hash_however_the_stream_is_cut() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"T1700000000 0 1700000000 0\n");
        stream.extend_from_slice(b"C0644 11 a.txt\nhello world\0");
        stream.extend_from_slice(b"C0600 0 empty\n\0");
        for cut in 0..=stream.len() {
            let mut s = upload(&["/srv/in"], true);
            let mut done = pass(&mut s, &stream[..cut]);
            done.extend(pass(&mut s, &stream[cut..]));
            done.extend(s.finish());
            assert_eq!(done.len(), 2, "cut {cut}: {done:?}");
            assert_eq!(done[0].path, "/srv/in/a.txt");
            assert_eq!(done[0].bytes, 11);
            assert_eq!(
                done[0].sha256.as_deref(),
                Some(sha(b"hello world").as_str())
            );
            assert_eq!(done[0].outcome, "ok");
            assert_eq!(done[0].flags.as_deref(), Some("mode 0644, sent as a.txt"));
            assert_eq!(done[1].path, "/srv/in/empty");
            assert_eq!(done[1].sha256.as_deref(), Some(sha(b"").as_str()));
        }
    }

    #[test]
    fn a_file_is_ok_only_once_the_receiver_confirmed_it() {
        let mut s = upload(&["/srv/in/"], false);
        assert!(s.answer(b"\0").is_empty());
        assert!(s.feed(b"C0644 2 a\nhi\0").is_empty());
        // Record accepted, file not yet confirmed.
        assert!(s.answer(b"\0").is_empty());
        let done = s.answer(b"\x01scp: /srv/in/a: No space left on device\n");
        assert_eq!(
            done[0].outcome,
            "failed: the receiver: scp: /srv/in/a: No space left on device"
        );
        // Still followed: the next file passes.
        let done = pass(&mut s, b"C0644 1 b\nx\0");
        assert_eq!(
            (done[0].path.as_str(), done[0].outcome.as_str()),
            ("/srv/in/b", "ok")
        );
        // Never confirmed: said so at the end.
        assert!(s.feed(b"C0644 1 c\ny\0").is_empty());
        let done = s.finish();
        assert_eq!(done[0].outcome, "incomplete: not confirmed by the receiver");
    }

    #[test]
    fn a_refused_record_stops_the_stream_being_followed() {
        // The receiver refuses `decoy`; a source that sends on regardless
        // (its "contents" being another record) gets no record but one
        // saying the stream is no longer followed.
        let mut s = upload(&["/srv/in/"], false);
        s.answer(b"\0");
        let mut done = s.feed(b"C0644 20 decoy\nC0644 4 evil\nbad!\0");
        done.extend(s.answer(b"\x01scp: /srv/in/decoy: Is a directory\n"));
        done.extend(s.feed(b"C0644 1 later\nx\0"));
        done.extend(s.answer(b"\0\0"));
        done.extend(s.finish());
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(
            done[0]
                .outcome
                .starts_with("not followed: the receiver refused a record")
        );
    }

    #[test]
    fn an_upload_says_where_else_it_went_when_the_path_could_be_either() {
        let mut s = upload(&["/srv/app/x.tar"], false);
        let done = pass(&mut s, b"C0644 3 local-name.tar\nabc\0");
        assert_eq!(done[0].path, "/srv/app/x.tar");
        assert_eq!(
            done[0].flags.as_deref(),
            Some(
                "mode 0644, sent as local-name.tar; written to /srv/app/x.tar/local-name.tar if the target path was a directory"
            )
        );
        // A trailing slash: a directory for sure.
        let mut s = upload(&["/srv/app/"], false);
        let done = pass(&mut s, b"C0644 3 y\nabc\0");
        assert_eq!(done[0].path, "/srv/app/y");
        assert_eq!(done[0].flags.as_deref(), Some("mode 0644, sent as y"));
        // A tree: inside the path, or in its place.
        let mut s = upload(&["/srv"], false);
        let done = pass(
            &mut s,
            b"D0755 0 site\nD0755 0 css\nC0644 1 a.css\nx\0E\nE\n",
        );
        assert_eq!(done[0].path, "/srv/site/css/a.css");
        assert_eq!(
            done[0].flags.as_deref(),
            Some(
                "mode 0644, sent as a.css; written to /srv/css/a.css if the target path did not exist"
            )
        );
    }

    #[test]
    fn trees_and_downloads_follow_the_named_paths() {
        let mut done = Vec::new();
        let mut s = ScpStream::new(&ScpCommand {
            direction: ScpDirection::Download,
            paths: vec!["/etc/app".into(), "/missing".into(), "/var/log/x".into()],
            recursive: true,
            into_dir: false,
        });
        done.extend(pass(
            &mut s,
            b"D0755 0 app\nC0644 2 a\nhi\0D0700 0 sub\nC0600 1 b\nz\0E\nE\n",
        ));
        done.extend(pass(
            &mut s,
            b"\x01scp: /missing: No such file or directory\n",
        ));
        done.extend(pass(&mut s, b"C0644 4 x\nlogs\0"));
        done.extend(pass(&mut s, b"C0644 2 extra\nhi\0"));
        done.extend(s.finish());
        let got = outcomes(&done);
        assert_eq!(
            got,
            vec![
                ("/etc/app/a", "ok"),
                ("/etc/app/sub/b", "ok"),
                (
                    "/missing",
                    "failed: scp: /missing: No such file or directory"
                ),
                ("/var/log/x", "ok"),
                ("(not asked for) extra", "ok"),
            ]
        );
    }

    #[test]
    fn a_read_failure_part_way_is_that_file_s_not_the_next() {
        let mut s = ScpStream::new(&ScpCommand {
            direction: ScpDirection::Download,
            paths: vec!["/a".into(), "/b".into()],
            recursive: false,
            into_dir: false,
        });
        let mut done = pass(&mut s, b"C0644 3 a\nxyz\x01scp: /a: Input/output error\n");
        done.extend(pass(&mut s, b"C0644 1 b\nq\0"));
        let got = outcomes(&done);
        assert_eq!(
            got,
            vec![
                (
                    "/a",
                    "failed: the source could not read it (scp: /a: Input/output error)"
                ),
                ("/b", "ok"),
            ]
        );
    }

    #[test]
    fn a_stream_that_is_not_scp_is_no_longer_followed() {
        for bad in [
            &b"C0644 1 ../escape\nx\0"[..],
            b"C0644 1 a/b\nx\0",
            b"Cxyz 1 a\nx\0",
            b"C0644 -1 a\n",
            b"Z what\n",
            b"E\n",
        ] {
            let mut s = upload(&["/tmp"], true);
            let mut done = pass(&mut s, bad);
            done.extend(s.finish());
            assert_eq!(done.len(), 1, "{bad:?}: {done:?}");
            assert!(done[0].outcome.starts_with("not followed: "), "{done:?}");
            // Nothing after is read.
            assert!(pass(&mut s, b"C0644 1 b\nx\0").is_empty());
        }
        let mut s = upload(&["/tmp"], true);
        let long = vec![b'C'; MAX_LINE + 1];
        let done = s.feed(&long);
        assert!(done[0].outcome.starts_with("not followed: "), "{done:?}");
        // Deep trees stop being followed before they cost memory.
        let mut s = upload(&["/tmp"], true);
        let mut done = Vec::new();
        for _ in 0..MAX_DEPTH + 1 {
            done.extend(pass(&mut s, b"D0755 0 dddddddddddddddddddddddddddddd\n"));
        }
        assert!(
            done[0].outcome.starts_with("not followed: a tree deeper"),
            "{done:?}"
        );
        // A source that runs ahead of the receiver.
        let mut s = upload(&["/tmp"], true);
        let done = s.feed(&b"T1 0 1 0\n".repeat(MAX_OWED + 1));
        assert!(
            done[0]
                .outcome
                .starts_with("not followed: the source ran ahead"),
            "{done:?}"
        );
        // A receiver that answers what nobody asked.
        let mut s = upload(&["/tmp"], true);
        let done = s.answer(b"\0\0");
        assert!(done[0].outcome.starts_with("not followed: "), "{done:?}");
    }

    #[test]
    fn a_file_cut_short_says_so() {
        let mut s = upload(&["/tmp"], true);
        assert!(pass(&mut s, b"C0644 10 a\nhalf").is_empty());
        let done = s.finish();
        assert_eq!(done[0].outcome, "incomplete: 6 bytes missing");
    }
}
