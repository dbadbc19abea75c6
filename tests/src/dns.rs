//! A DNS server over TCP on loopback that answers A queries for the names
//! a test gives it and records what was asked.
//!
//! The image's boot test points the appliance's resolver at it
//! (`options use-vc` in resolv.conf: user networking in `restrict=on` mode
//! carries only TCP from the guest to the host), so the static gatehouse
//! binary's own name resolution is exercised end to end. One thread per
//! connection, several queries per connection (glibc asks for A and AAAA
//! in turn); an unknown name gets NXDOMAIN, any other type an empty answer.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result};

/// Largest query accepted; real ones are a few dozen bytes.
const MAX_QUERY_BYTES: usize = 512;

/// How long a connection may sit idle before it is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the accept loop checks whether the server was dropped.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

const TYPE_A: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;

/// A running server; dropping it stops it.
pub struct DnsServer {
    port: u16,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    records: Vec<(String, Ipv4Addr)>,
    queries: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl DnsServer {
    /// Serves `records` (name, address) on a free loopback port.
    pub fn start(records: &[(&str, Ipv4Addr)]) -> Result<Self> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the DNS server")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            records: records
                .iter()
                .map(|(name, ip)| (name.trim_end_matches('.').to_ascii_lowercase(), *ip))
                .collect(),
            queries: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accept_thread = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("dns-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .context("spawning the DNS server")?
        };
        Ok(DnsServer {
            port,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every name asked so far (any type), lowercase, in order.
    pub fn queries(&self) -> Vec<String> {
        self.shared
            .queries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                let _ = thread::Builder::new()
                    .name("dns-conn".into())
                    .spawn(move || {
                        // A client that goes away mid-query is its own problem.
                        let _ = serve(stream, &shared);
                    });
            }
            // WouldBlock, or a client that reset before accept: keep serving.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return Ok(());
        }
        let len = u16::from_be_bytes(len) as usize;
        if len > MAX_QUERY_BYTES {
            return Ok(());
        }
        let mut query = vec![0u8; len];
        stream.read_exact(&mut query)?;
        let Some(answer) = answer(&query, shared) else {
            return Ok(());
        };
        let mut out = (answer.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&answer);
        stream.write_all(&out)?;
    }
}

/// The response to one query, or `None` for something that is not one.
fn answer(query: &[u8], shared: &Shared) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let n = *query.get(at)? as usize;
        at += 1;
        if n == 0 {
            break;
        }
        // Compression pointers never appear in a question.
        if n > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + n)?).to_ascii_lowercase());
        at += n;
    }
    let qtype = u16::from_be_bytes(query.get(at..at + 2)?.try_into().ok()?);
    let question_end = at + 4;
    let question = query.get(12..question_end)?;
    let name = labels.join(".");
    shared
        .queries
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(name.clone());
    let known = shared.records.iter().find(|(n, _)| *n == name);
    let rcode = if known.is_some() { 0 } else { RCODE_NXDOMAIN };
    let answer_ip = known.filter(|_| qtype == TYPE_A).map(|(_, ip)| *ip);

    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&header[..2]); // id
    // QR, opcode 0, RD copied, RA; the rcode.
    let rd = u16::from(header[2] & 1) << 8;
    out.extend_from_slice(&(0x8080 | rd | rcode).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // questions
    out.extend_from_slice(&u16::from(answer_ip.is_some()).to_be_bytes()); // answers
    out.extend_from_slice(&[0, 0, 0, 0]); // authority, additional
    out.extend_from_slice(question);
    if let Some(ip) = answer_ip {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // class IN
        out.extend_from_slice(&60u32.to_be_bytes()); // TTL
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    fn ask(server: &DnsServer, q: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(server.address()).unwrap();
        s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
        s.write_all(q).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut out = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut out).unwrap();
        out
    }

    #[test]
    fn answers_known_names_and_refuses_others() {
        let server = DnsServer::start(&[("db.test", Ipv4Addr::new(10, 0, 2, 100))]).unwrap();
        let a = ask(&server, &query("DB.test", TYPE_A));
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0x0f, 0, "rcode");
        assert_eq!(&a[6..8], &[0, 1], "one answer");
        assert_eq!(&a[a.len() - 4..], &[10, 0, 2, 100]);
        let aaaa = ask(&server, &query("db.test", 28));
        assert_eq!(&aaaa[6..8], &[0, 0], "no AAAA answer");
        let other = ask(&server, &query("nope.test", TYPE_A));
        assert_eq!(other[3] & 0x0f, RCODE_NXDOMAIN as u8);
        assert_eq!(server.queries(), ["db.test", "db.test", "nope.test"]);
    }
}
