//! Loopback ports for the servers a test starts.
//!
//! Every server in the harness listens on 127.0.0.1 only: tests must never
//! expose a throwaway database or a token issuer to the network.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A loopback port that is free now, for a server a test is about to start.
///
/// The port is released before returning, so the server binds it a moment
/// later. A port from `bind(127.0.0.1:0)` comes from the kernel's ephemeral
/// range, and any process's next outgoing connection may take it as its
/// local port in that moment (CI once lost a gateway's API port this way).
/// So ports are handed out from just below the ephemeral range, which
/// outgoing connections never use: each process walks that range from a
/// point derived from its pid, never hands out a port twice, and skips ports
/// something already listens on. Only when no such range exists does it fall
/// back to asking the kernel. Callers that start servers still retry on
/// "address in use", for a test process that picked the same port.
pub fn free_loopback_port() -> Result<u16> {
    static CURSOR: OnceLock<Option<Walk>> = OnceLock::new();
    let walk = CURSOR.get_or_init(|| {
        let (lo, _) = ephemeral_range()?;
        Walk::below(lo, std::process::id())
    });
    if let Some(port) = walk.as_ref().and_then(Walk::take) {
        return Ok(port);
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the bound address")?
        .port())
}

/// The ports below the ephemeral range this process hands out, in turn.
struct Walk {
    first: u16,
    len: u16,
    step: AtomicU16,
}

/// How many ports below the ephemeral range are used; fewer when the range
/// starts low.
const WALK_PORTS: u16 = 12_000;
/// Ports under this are left alone (system services, well-known ports).
const LOWEST_PORT: u16 = 10_000;

impl Walk {
    fn below(ephemeral_low: u16, pid: u32) -> Option<Walk> {
        let first = ephemeral_low.saturating_sub(WALK_PORTS).max(LOWEST_PORT);
        let len = ephemeral_low.checked_sub(first)?;
        if len < 100 {
            return None;
        }
        // Processes started one after another land far apart.
        let start = (pid.wrapping_mul(2_654_435_761) % u32::from(len)) as u16;
        Some(Walk {
            first,
            len,
            step: AtomicU16::new(start),
        })
    }

    /// The next port of the walk nothing listens on, if any is left.
    fn take(&self) -> Option<u16> {
        (0..self.len)
            .map(|_| self.next())
            .find(|&port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
    }

    fn next(&self) -> u16 {
        let step = self
            .step
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((s + 1) % self.len)
            })
            .unwrap_or(0);
        self.first + step
    }
}

/// `net.ipv4.ip_local_port_range`: where outgoing connections get their
/// local ports.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_below_the_ephemeral_range_and_are_not_repeated() -> Result<()> {
        let (lo, _) = ephemeral_range().expect("Linux reports its ephemeral range");
        let ports: Vec<u16> = (0..200)
            .map(|_| free_loopback_port())
            .collect::<Result<_>>()?;
        assert!(
            ports.iter().all(|&p| p < lo && p >= LOWEST_PORT),
            "{ports:?}"
        );
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        Ok(())
    }

    #[test]
    fn a_port_something_listens_on_is_skipped() -> Result<()> {
        let port = free_loopback_port()?;
        let _held = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        let walk = Walk::below(port + 2, 0).expect("a range");
        // Start the walk on the held port; it wraps to the range's start
        // after the port above.
        walk.step.store(port - walk.first, Ordering::Relaxed);
        let next = walk.take().expect("a free port");
        assert_ne!(next, port);
        assert!(next == port + 1 || next < port, "{next} after {port}");
        Ok(())
    }

    #[test]
    fn no_walk_when_the_ephemeral_range_starts_too_low() {
        assert!(Walk::below(10_050, 1).is_none());
        assert!(Walk::below(1_024, 1).is_none());
        let walk = Walk::below(32_768, 7).expect("the Linux default leaves room");
        assert_eq!((walk.first, walk.len), (20_768, 12_000));
    }
}
