//! Loopback ports for the servers a test starts.
//!
//! Every server in the harness listens on 127.0.0.1 only: tests must never
//! expose a throwaway database or a token issuer to the network.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Asks the kernel for a currently free loopback port. The port is released
/// before returning, so another process may take it before the caller binds;
/// callers that start servers retry on "address in use" for that reason.
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the bound address")?
        .port())
}

/// Whether something accepts TCP connections on `127.0.0.1:port` right now.
pub fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls `127.0.0.1:port` until it accepts a connection, `timeout` passes, or
/// `still_alive` reports that the server process is gone (so a crash at
/// startup fails fast instead of after the whole timeout).
pub fn wait_for_port(
    port: u16,
    timeout: Duration,
    mut still_alive: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if accepts_connections(port) {
            return Ok(true);
        }
        if !still_alive()? {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}
