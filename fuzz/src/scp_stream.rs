//! Target `scp_stream`: the legacy scp stream reader (`ssh::sftp::
//! scp_stream`) fed a source's bytes, for an upload or a download, with
//! or without `-d`, cut into pieces anywhere.
//!
//! The first byte picks the command (bit 0: download; bit 1: `-d`) and a
//! cut stride (its top bits); the rest is the stream. Invariants:
//! - nothing panics, and memory stays bounded (a control line never grows
//!   past what a path can be);
//! - the files recorded do not depend on how the stream was cut: fed in
//!   one piece or in pieces (the receiver accepting what is owed after
//!   each), the same records with the same hashes — except that a source
//!   running further ahead of the receiver may be stopped sooner;
//! - a file recorded `ok` has exactly as many bytes hashed as its record
//!   announced, and a path built only from names of one component: never
//!   `..`, never escaping the named paths (a download's record beyond the
//!   paths asked for says so).

use gatehouse_actors::ssh::sftp::FileOp;
use gatehouse_actors::ssh::sftp::scp::{ScpCommand, ScpDirection};
use gatehouse_actors::ssh::sftp::scp_stream::{ScpStream, UNASKED};

fn command(sel: u8) -> ScpCommand {
    ScpCommand {
        direction: if sel & 1 == 0 {
            ScpDirection::Upload
        } else {
            ScpDirection::Download
        },
        paths: vec!["/srv/in".into(), "/var/log/x".into()],
        recursive: true,
        into_dir: sel & 2 != 0,
    }
}

/// The stream in pieces of `stride`, a receiver that accepts everything
/// answering after each piece (an honest source waits for the answers;
/// this one runs ahead by up to a piece, which is the same to the reader).
fn run(command: &ScpCommand, stream: &[u8], stride: usize) -> Vec<FileOp> {
    let mut s = ScpStream::new(command);
    let mut done = s.answer(&[0]);
    for piece in stream.chunks(stride.max(1)) {
        done.extend(s.feed(piece));
        let acks = vec![0u8; s.owed()];
        done.extend(s.answer(&acks));
    }
    done.extend(s.finish());
    done
}

/// Records as a set, where a file the receiver confirmed and one still
/// waiting for it when the stream was lost count as the same: how far
/// the source ran ahead decides which it is.
fn comparable(records: &[FileOp]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.outcome == "ok" || f.outcome.ends_with("not confirmed by the receiver") {
                f.outcome = "ok or unconfirmed".into();
            }
            format!("{f:?}")
        })
        .collect();
    out.sort();
    out
}

/// Fed further ahead of the receiver than it allows, the reader stops.
fn ran_ahead(records: &[FileOp]) -> bool {
    records
        .iter()
        .any(|f| f.outcome.starts_with("not followed: the source ran ahead"))
}

pub fn check(data: &[u8]) {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let command = command(sel);
    let bytewise = run(&command, stream, 1);
    let stride = usize::from(sel >> 2) + 1;
    for (what, other) in [
        ("whole", run(&command, stream, stream.len())),
        ("in pieces", run(&command, stream, stride)),
    ] {
        if !ran_ahead(&other) {
            assert_eq!(
                comparable(&bytewise),
                comparable(&other),
                "records differ fed {what} and byte by byte"
            );
        }
    }
    for f in &bytewise {
        // A tree the target sent beyond what was asked for stays marked.
        let unasked = command.direction == ScpDirection::Download && f.path.starts_with(UNASKED);
        assert!(
            unasked || command.paths.iter().any(|p| f.path.starts_with(p.as_str())),
            "a record outside the named paths: {f:?}"
        );
        assert!(
            !f.path.split('/').any(|c| c == ".." || c == "."),
            "a path with a dot component: {f:?}"
        );
        if f.outcome == "ok" {
            assert!(f.sha256.as_ref().is_some_and(|h| h.len() == 64), "{f:?}");
        }
    }
}
