//! Shared pieces of the end-to-end tests: a standard world (cluster, issuer,
//! gateway), reading recordings through the CLI, a minimal raw PostgreSQL
//! protocol client for exact SQLSTATE and malformed-frame checks, and a few
//! process helpers.
//!
//! Every test file includes this with `mod common;` and uses a different
//! subset, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod admin;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gatehouse_tests::{
    Claims, ConfigBuilder, Gatehouse, Issuer, OutputExt, PgCluster, PgTarget, SslMode,
};
use serde_json::Value;

/// The group the standard config grants `app-db` to.
pub const DEPLOY_GROUP: &str = "ci-deploy";
/// The connection of the standard config.
pub const APP_DB: &str = "app-db";

/// How long a test waits for a session's recording to show its end. The
/// recorder flushes within ~200 ms; the rest is slack for a loaded machine.
pub const RECORDING_WAIT: Duration = Duration::from_secs(15);

/// A throwaway cluster, an issuer and a gateway in front of the cluster.
pub struct World {
    // Field order is drop order: the gateway goes first.
    pub gh: Gatehouse,
    pub issuer: Issuer,
    pub pg: PgCluster,
}

impl World {
    /// The standard config (`app-db` granted to `ci-deploy`), adjusted by
    /// `tweak`.
    pub fn start(
        tweak: impl FnOnce(ConfigBuilder, &Issuer, &PgCluster) -> ConfigBuilder,
    ) -> Result<Self> {
        let pg = PgCluster::start()?;
        let issuer = Issuer::start()?;
        let config = tweak(ConfigBuilder::standard(&issuer, &pg), &issuer, &pg);
        let gh = Gatehouse::start(&config)?;
        Ok(World { gh, issuer, pg })
    }

    /// The standard config, unchanged.
    pub fn standard() -> Result<Self> {
        Self::start(|c, _, _| c)
    }

    /// A good token for `sub` in the deploy group.
    pub fn token(&self, sub: &str) -> Result<String> {
        self.issuer.mint(&Claims::new(sub).groups([DEPLOY_GROUP]))
    }

    /// A psql/pgbench target over TLS verified against the gateway's CA,
    /// even when the config also allows plaintext.
    pub fn tls_target(&self, dbname: &str, user: &str, token: &str) -> PgTarget {
        tls_target(&self.gh, dbname, user, token)
    }

    /// `psql` through the gateway over verified TLS as `user` with `token`.
    pub fn psql(&self, user: &str, token: &str, sql: &str) -> Result<std::process::Output> {
        self.tls_target(APP_DB, user, token).psql(sql)
    }

    /// The daemon log, for failure messages.
    pub fn log(&self) -> String {
        self.gh.log()
    }
}

/// A verify-full TLS target for `gh`, regardless of its plaintext setting.
pub fn tls_target(gh: &Gatehouse, dbname: &str, user: &str, token: &str) -> PgTarget {
    let mut target = gh.target(dbname, user, token);
    target.sslmode = SslMode::VerifyFull;
    target.sslrootcert = Some(gh.ca_cert_path());
    target
}

// ---------------------------------------------------------------------------
// Recordings through the CLI
// ---------------------------------------------------------------------------

/// `gatehouse recordings list --json`, parsed.
pub fn list_sessions(gh: &Gatehouse) -> Result<Vec<Value>> {
    let out = gh.run_cli(&["recordings", "list", "--json"])?;
    if !out.status.success() {
        bail!("recordings list failed: {}", out.stderr_text());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("parsing header line {l}")))
        .collect()
}

/// The headers of ended sessions of `protocol`, waiting until there are
/// at least `n`.
pub fn ended_sessions(gh: &Gatehouse, protocol: &str, n: usize) -> Result<Vec<Value>> {
    let deadline = Instant::now() + RECORDING_WAIT;
    loop {
        let ended: Vec<Value> = list_sessions(gh)?
            .into_iter()
            .filter(|h| h["protocol"] == protocol && !h["outcome"].is_null())
            .collect();
        if ended.len() >= n {
            return Ok(ended);
        }
        if Instant::now() > deadline {
            bail!(
                "{} {protocol} sessions ended, wanted {n}\n{}",
                ended.len(),
                gh.log()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `gatehouse recordings show ID --json`: the header and the events.
pub fn show_session(gh: &Gatehouse, id: &str) -> Result<(Value, Vec<Value>)> {
    let out = gh.run_cli(&["recordings", "show", id, "--json"])?;
    if !out.status.success() {
        bail!("recordings show {id} failed: {}", out.stderr_text());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first: Value =
        serde_json::from_str(lines.next().ok_or_else(|| anyhow!("empty show output"))?)?;
    let header = first
        .get("header")
        .cloned()
        .ok_or_else(|| anyhow!("first line has no header: {first}"))?;
    let events = lines
        .map(|l| serde_json::from_str(l).with_context(|| format!("parsing event line {l}")))
        .collect::<Result<Vec<Value>>>()?;
    Ok((header, events))
}

/// Waits until exactly one session matches `pred` and has an outcome, and
/// returns its header. Fails if none shows up within [`RECORDING_WAIT`] or
/// if several match.
pub fn wait_ended_session(
    gh: &Gatehouse,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + RECORDING_WAIT;
    loop {
        let sessions = list_sessions(gh)?;
        let matching: Vec<&Value> = sessions.iter().filter(|h| pred(h)).collect();
        if matching.len() > 1 {
            bail!("several sessions match {what}: {matching:#?}");
        }
        if let Some(h) = matching.first()
            && !h["outcome"].is_null()
        {
            return Ok((*h).clone());
        }
        if Instant::now() >= deadline {
            bail!(
                "no ended session matching {what} within {RECORDING_WAIT:?}; sessions: {sessions:#?}\n--- log ---\n{}",
                gh.log()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The ended session whose startup `user` was `client_user`.
pub fn ended_session_of_user(gh: &Gatehouse, client_user: &str) -> Result<Value> {
    wait_ended_session(gh, &format!("client_user={client_user}"), |h| {
        h["client_user"] == client_user
    })
}

/// Header `id` as a string.
pub fn session_id(header: &Value) -> Result<String> {
    header["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("header without id: {header}"))
}

/// The `kind` object's discriminator of an event.
pub fn kind_of(event: &Value) -> &str {
    event["kind"]["kind"].as_str().unwrap_or("?")
}

/// Events with the given kind.
pub fn events_of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| kind_of(e) == kind).collect()
}

// ---------------------------------------------------------------------------
// Log hygiene
// ---------------------------------------------------------------------------

/// Fails if the daemon log contains the token, or (for signed tokens) its
/// signature part on its own.
pub fn assert_token_not_logged(gh: &Gatehouse, token: &str) {
    let log = gh.log();
    assert!(
        !log.contains(token),
        "the daemon log contains the token {token:?}:\n{log}"
    );
    if let Some((_, sig)) = token.rsplit_once('.')
        && sig.len() >= 16
    {
        assert!(
            !log.contains(sig),
            "the daemon log contains the token's signature:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A running psql whose stdin the test keeps, with stdout and stderr
/// collected on threads so the test can watch them while it runs.
pub struct LivePsql {
    pub child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl LivePsql {
    /// Starts `psql -X -w <args>` against `target` with stdin piped.
    pub fn spawn(target: &PgTarget, args: &[&str]) -> Result<Self> {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-w"]).args(args);
        target.apply_env(&mut cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning psql")?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            readers.push(collect_pipe(pipe, stdout.clone()));
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(collect_pipe(pipe, stderr.clone()));
        }
        Ok(LivePsql {
            child,
            stdout,
            stderr,
            readers,
        })
    }

    /// Writes to psql's stdin.
    pub fn write_stdin(&mut self, text: &str) -> Result<()> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("psql stdin already closed"))?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes psql's stdin (end of script).
    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Waits until `pred(stdout)` holds.
    pub fn wait_stdout(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !pred(&self.stdout()) {
            if Instant::now() >= deadline {
                bail!(
                    "psql output not as expected within {timeout:?}; stdout: {}; stderr: {}",
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Sends a signal by name to psql.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let out = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .output()
            .context("running kill")?;
        if !out.status.success() {
            bail!("kill -s {sig} failed: {}", out.stderr_text());
        }
        Ok(())
    }

    /// Waits up to `timeout` for psql to exit; kills it and fails otherwise.
    pub fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "psql did not exit within {timeout:?}; stdout: {}; stderr: {}",
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// psql through the gateway as `user` running `sql` with `-c` (stopping
/// at the first error, errors with their SQLSTATE), kept running so the
/// test can watch it wait.
pub fn spawn_psql(w: &World, user: &str, sql: &str) -> Result<LivePsql> {
    let token = w.token(user)?;
    LivePsql::spawn(
        &w.tls_target(APP_DB, user, &token),
        &[
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            sql,
        ],
    )
}

impl Drop for LivePsql {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect_pipe<R: Read + Send + 'static>(
    mut pipe: R,
    into: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// Waits up to `timeout` for a spawned child with piped (short) output to
/// exit and returns its output; kills it and fails otherwise.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Result<std::process::Output> {
    let deadline = Instant::now() + timeout;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("child did not exit within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut out = std::process::Output {
        status: child.wait()?,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut out.stdout)?;
    }
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_end(&mut out.stderr)?;
    }
    Ok(out)
}

/// Polls `query` directly on the cluster until it prints `expected`.
pub fn wait_direct(pg: &PgCluster, query: &str, expected: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = pg.psql_direct("app", query)?;
        if got == expected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{query} printed {got:?}, not {expected:?}, within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// How many backends of the cluster are running a statement that
/// contains `needle` (the polling query itself excluded).
pub fn active_count_query(needle: &str) -> String {
    format!(
        "select count(*) from pg_stat_activity where state = 'active' \
         and query like '%{needle}%' and pid <> pg_backend_pid()"
    )
}

// ---------------------------------------------------------------------------
// Raw protocol client (plaintext)
// ---------------------------------------------------------------------------

/// One backend message.
#[derive(Clone, Debug)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// ErrorResponse / NoticeResponse fields by their one-letter code.
    pub fn fields(&self) -> HashMap<char, String> {
        let mut out = HashMap::new();
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
            out.insert(
                code as char,
                String::from_utf8_lossy(&tail[..end]).into_owned(),
            );
            rest = tail.get(end + 1..).unwrap_or(&[]);
        }
        out
    }

    pub fn sqlstate(&self) -> String {
        self.fields().get(&'C').cloned().unwrap_or_default()
    }

    pub fn message(&self) -> String {
        self.fields().get(&'M').cloned().unwrap_or_default()
    }

    /// DataRow values as bytes (`None` for NULL).
    pub fn row_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let b = &self.body;
        let n = i16::from_be_bytes([b[0], b[1]]) as usize;
        let mut pos = 2;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let len = i32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
            pos += 4;
            if len < 0 {
                out.push(None);
            } else {
                let len = len as usize;
                out.push(Some(b[pos..pos + len].to_vec()));
                pos += len;
            }
        }
        out
    }

    /// DataRow values as text (`None` for NULL).
    pub fn row(&self) -> Vec<Option<String>> {
        self.row_bytes()
            .into_iter()
            .map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()))
            .collect()
    }

    /// CommandComplete tag.
    pub fn tag_text(&self) -> String {
        let end = self
            .body
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.body.len());
        String::from_utf8_lossy(&self.body[..end]).into_owned()
    }
}

/// How a raw startup ended.
#[derive(Debug)]
pub enum Startup {
    /// Authenticated; the session is ready for queries.
    Ready,
    /// The gateway sent this ErrorResponse.
    Refused(Msg),
}

/// A plaintext PostgreSQL protocol client on a std socket.
pub struct RawPg {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawPg {
    pub fn connect(port: u16) -> Result<Self> {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).context("connecting to the gateway")?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(RawPg {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, timeout: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .context("writing to the gateway")?;
        self.stream.flush()?;
        Ok(())
    }

    pub fn send_startup(&mut self, user: &str, database: &str) -> Result<()> {
        self.send(&startup_message(&[("user", user), ("database", database)]))
    }

    /// Startup, cleartext password (the token), then wait for ReadyForQuery
    /// or an ErrorResponse.
    pub fn login(&mut self, user: &str, database: &str, token: &str) -> Result<Startup> {
        self.login_with(&[("user", user), ("database", database)], token)
    }

    /// [`RawPg::login`] with any startup parameters.
    pub fn login_with(&mut self, params: &[(&str, &str)], token: &str) -> Result<Startup> {
        self.send(&startup_message(params))?;
        loop {
            let msg = self
                .read_msg()?
                .ok_or_else(|| anyhow!("gateway closed during startup"))?;
            match msg.tag {
                b'R' => {
                    let code =
                        i32::from_be_bytes([msg.body[0], msg.body[1], msg.body[2], msg.body[3]]);
                    match code {
                        0 => {}
                        3 => self.send(&password_message(token))?,
                        other => bail!("unexpected authentication request {other}"),
                    }
                }
                b'E' => return Ok(Startup::Refused(msg)),
                b'Z' => return Ok(Startup::Ready),
                _ => {}
            }
        }
    }

    /// Like [`RawPg::login`] but fails unless the session became ready.
    pub fn login_ok(&mut self, user: &str, database: &str, token: &str) -> Result<()> {
        match self.login(user, database, token)? {
            Startup::Ready => Ok(()),
            Startup::Refused(e) => bail!("login refused: {} {}", e.sqlstate(), e.message()),
        }
    }

    /// The next message, or `None` at end of stream.
    pub fn read_msg(&mut self) -> Result<Option<Msg>> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                if len < 4 {
                    bail!("server sent a frame with length {len}");
                }
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let frame: Vec<u8> = self.buf.drain(..total).collect();
                    return Ok(Some(Msg {
                        tag: frame[0],
                        body: frame[5..].to_vec(),
                    }));
                }
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    bail!(
                        "stream ended inside a frame ({} bytes buffered)",
                        self.buf.len()
                    );
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from the gateway"),
            }
        }
    }

    /// Reads one raw byte (the answer to SSLRequest / GSSENCRequest).
    pub fn read_byte(&mut self) -> Result<u8> {
        if !self.buf.is_empty() {
            return Ok(self.buf.remove(0));
        }
        let mut b = [0u8; 1];
        self.stream.read_exact(&mut b).context("reading one byte")?;
        Ok(b[0])
    }

    /// Messages up to and including ReadyForQuery.
    pub fn until_ready(&mut self) -> Result<Vec<Msg>> {
        let mut out = Vec::new();
        loop {
            let msg = self
                .read_msg()?
                .ok_or_else(|| anyhow!("gateway closed before ReadyForQuery; got {out:?}"))?;
            let done = msg.tag == b'Z';
            out.push(msg);
            if done {
                return Ok(out);
            }
        }
    }

    /// Reads until the server closes; returns every message seen. A reset
    /// after the last message counts as a close.
    pub fn until_closed(&mut self) -> Result<Vec<Msg>> {
        let mut out = Vec::new();
        loop {
            match self.read_msg() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return Ok(out),
                Err(e) => {
                    let reset = e
                        .downcast_ref::<std::io::Error>()
                        .or_else(|| e.root_cause().downcast_ref::<std::io::Error>())
                        .is_some_and(|io| {
                            matches!(
                                io.kind(),
                                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                            )
                        });
                    if reset {
                        return Ok(out);
                    }
                    return Err(e.context(format!("messages so far: {out:?}")));
                }
            }
        }
    }

    /// Expects exactly one ErrorResponse followed by the server closing.
    pub fn expect_fatal_then_close(&mut self) -> Result<Msg> {
        let msgs = self.until_closed()?;
        let errors: Vec<&Msg> = msgs.iter().filter(|m| m.tag == b'E').collect();
        if errors.len() != 1 {
            bail!("expected one ErrorResponse before close, got {msgs:?}");
        }
        Ok(errors[0].clone())
    }

    pub fn terminate(&mut self) -> Result<()> {
        self.send(&frame(b'X', &[]))?;
        let _ = self.stream.shutdown(Shutdown::Write);
        Ok(())
    }
}

/// A tagged frame.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

pub fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes());
    for (k, v) in params {
        cstr(&mut body, k);
        cstr(&mut body, v);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// SSLRequest (80877103) or GSSENCRequest (80877104).
pub fn special_request(code: i32) -> Vec<u8> {
    let mut out = 8i32.to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out
}

pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;

pub fn password_message(password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, password);
    frame(b'p', &body)
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, sql);
    frame(b'Q', &body)
}

/// Parse with no declared parameter types.
pub fn parse(statement: &str, sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, statement);
    cstr(&mut body, sql);
    body.extend_from_slice(&0i16.to_be_bytes());
    frame(b'P', &body)
}

/// Bind with all-text parameters and results.
pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    cstr(&mut body, statement);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v.as_bytes());
            }
        }
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    frame(b'B', &body)
}

/// Describe a portal.
pub fn describe_portal(portal: &str) -> Vec<u8> {
    let mut body = vec![b'P'];
    cstr(&mut body, portal);
    frame(b'D', &body)
}

pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    body.extend_from_slice(&max_rows.to_be_bytes());
    frame(b'E', &body)
}

pub fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

/// Waits until the daemon log contains `needle`.
pub fn wait_for_log(gh: &Gatehouse, needle: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !gh.log().contains(needle) {
        if Instant::now() >= deadline {
            bail!(
                "{needle:?} not logged within {timeout:?}\n--- log ---\n{}",
                gh.log()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A disk that fills up
// ---------------------------------------------------------------------------

/// A data_dir on a small tmpfs, mounted before the daemon starts.
pub struct SmallDisk {
    pub path: std::path::PathBuf,
}

impl SmallDisk {
    pub fn mount(path: &std::path::Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()?
            .success();
        if !ok {
            bail!("mounting a tmpfs needs root");
        }
        Ok(SmallDisk {
            path: path.to_owned(),
        })
    }

    /// Fill what is left with a file, so the next write fails with ENOSPC.
    pub fn fill(&self) -> Result<()> {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", self.path.join("filler").display()))
            .output()?;
        Ok(())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

// ---------------------------------------------------------------------------
// Archives away from the appliance
// ---------------------------------------------------------------------------

/// `gatehouse recordings verify --archive ARCHIVE --public-key KEY` as an
/// auditor runs it: in `dir`, with no config file anywhere. The key is a
/// copy of `gh`'s public key written into `dir`.
pub fn verify_archive_away(
    gh: &Gatehouse,
    dir: &std::path::Path,
    archive: &std::path::Path,
) -> Result<std::process::Output> {
    let key = dir.join("appliance.pub");
    std::fs::copy(gh.data_dir().join("recording-signing.pub"), &key)?;
    Ok(Command::new(gatehouse_tests::gatehouse::gatehouse_bin()?)
        .current_dir(dir)
        .env_remove("GATEHOUSE_CONFIG")
        .args(["recordings", "verify", "--archive"])
        .arg(archive)
        .arg("--public-key")
        .arg(&key)
        .output()?)
}

// ---------------------------------------------------------------------------
// What the store and its exports hold
// ---------------------------------------------------------------------------

/// `haystack` contains none of `secrets`.
pub fn assert_absent(haystack: &[u8], secrets: &[&str], what: &str) {
    for s in secrets {
        if let Some(at) = memmem(haystack, s.as_bytes()) {
            let from = at.saturating_sub(200);
            let to = (at + s.len() + 200).min(haystack.len());
            panic!(
                "{what} contains the original value {s:?}: …{}…",
                String::from_utf8_lossy(&haystack[from..to])
            );
        }
    }
}

pub fn memmem(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decompresses a zstd stream (the archive).
pub fn unzstd(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(bytes)?.read_to_end(&mut out)?;
    Ok(out)
}

/// A stored chunk's events, decompressed: the bytes that hold values.
pub fn chunk_plaintext(stored: &[u8]) -> Result<Vec<u8>> {
    use gatehouse_actors::store::schema::{Chunk, MAX_CHUNK_RAW};
    let chunk = Chunk::decode(stored).map_err(|e| anyhow!("decoding a chunk: {e}"))?;
    Ok(zstd::bulk::decompress(&chunk.compressed, MAX_CHUNK_RAW)?)
}

/// The store read the way archive export reads it (headers, seals, every
/// chunk decompressed) and the raw `recordings.redb` file hold none of
/// `secrets`. `present` are bytes the decompressed chunks must hold (a
/// positive control: the scan reads what was recorded).
pub fn assert_stored_recordings_lack(
    gh: &Gatehouse,
    secrets: &[&str],
    present: &[&[u8]],
) -> Result<()> {
    use gatehouse_actors::store::RecordingStore;
    let store_path = gh.data_dir().join("recordings.redb");
    {
        let store = RecordingStore::open_read_only(&store_path)?;
        let mut chunks = 0;
        let mut all_plain = Vec::new();
        for h in store.sessions()? {
            let raw = store.raw(h.id)?;
            assert_absent(&raw.header, secrets, "a stored header");
            if let Some(seal) = &raw.seal {
                assert_absent(seal, secrets, "a stored seal");
            }
            for (n, bytes) in &raw.chunks {
                let plain = chunk_plaintext(bytes)?;
                assert_absent(&plain, secrets, &format!("chunk {n} of {}", h.id));
                all_plain.extend_from_slice(&plain);
                chunks += 1;
            }
        }
        if chunks == 0 {
            bail!("no chunks stored");
        }
        for p in present {
            if memmem(&all_plain, p).is_none() {
                bail!(
                    "the decompressed chunks do not hold {:?}: the scan reads nothing",
                    String::from_utf8_lossy(p)
                );
            }
        }
    }
    let file = std::fs::read(&store_path)?;
    assert_absent(&file, secrets, "recordings.redb");
    Ok(())
}

/// `recordings export --format archive`: every member, chunks
/// decompressed, lacks `secrets`; session `id`'s events and chunks are in
/// it, and some chunk holds `present`.
pub fn assert_exported_archive_lacks(
    gh: &Gatehouse,
    id: &str,
    secrets: &[&str],
    present: &[u8],
) -> Result<()> {
    let out = gh.run_cli(&[
        "recordings",
        "export",
        "--since",
        "1d",
        "--format",
        "archive",
    ])?;
    if !out.status.success() {
        bail!("export failed: {}", out.stderr_text());
    }
    let tar_bytes = unzstd(&out.stdout)?;
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut members = std::collections::BTreeSet::new();
    let mut found = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        assert_absent(&data, secrets, &path);
        if path.ends_with(".bin") {
            let plain = chunk_plaintext(&data)?;
            assert_absent(&plain, secrets, &path);
            found |= memmem(&plain, present).is_some();
        }
        members.insert(path);
    }
    if !found {
        bail!(
            "no archived chunk holds {:?}",
            String::from_utf8_lossy(present)
        );
    }
    if !members.contains(&format!("sessions/{id}/events.jsonl"))
        || !members
            .iter()
            .any(|m| m.starts_with(&format!("sessions/{id}/chunks/")))
    {
        bail!("session {id} is missing from the archive: {members:?}");
    }
    Ok(())
}
