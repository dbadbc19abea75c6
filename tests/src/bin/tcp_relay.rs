//! `gatehouse-test-relay HOST:PORT`: joins its stdin and stdout to a TCP
//! connection to `HOST:PORT`.
//!
//! The image's boot test runs QEMU's user networking with `restrict=on`,
//! so the guest reaches nothing but the host services the test forwards
//! with `guestfwd=tcp:GUEST_ADDR:PORT-cmd:gatehouse-test-relay HOST:PORT`;
//! QEMU starts one relay per guest connection with the guest's end on
//! stdin and stdout. The relay ends when the host service closes; when the
//! guest closes first, the service sees its write side shut.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::thread;

/// Bytes per read in each direction.
const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: gatehouse-test-relay HOST:PORT");
        return ExitCode::from(2);
    };
    let stream = match TcpStream::connect(&addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gatehouse-test-relay: connecting to {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let upstream = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gatehouse-test-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Guest to service; at the guest's end of stream, half-close so the
    // service can still answer.
    thread::spawn(move || {
        let mut upstream = upstream;
        let _ = pump(&mut io::stdin().lock(), &mut upstream);
        let _ = upstream.shutdown(Shutdown::Write);
    });
    // Service to guest; the process ends with the service's side.
    let mut downstream = stream;
    let _ = pump(&mut downstream, &mut io::stdout().lock());
    ExitCode::SUCCESS
}

/// Copies until end of stream, flushing every chunk: stdout buffers by
/// line, and protocol messages have no lines.
fn pump(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}
