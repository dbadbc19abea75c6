//! The local control socket: how `gatehouse` commands on the box reach the
//! running daemon (the store has one writer; purges and live status must go
//! through it).
//!
//! `data_dir/control.sock`, mode 0600: only root (the daemon's user) can
//! connect. One JSON request line, one JSON response line — except a
//! console, which keeps the connection (see `crate::console::socket`).
//! The peer's uid and pid, from the kernel, are recorded with every purge
//! and every console action.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use gatehouse_actors::approval::{BrokerHandle, Decide, ListPending, PendingApproval};
use gatehouse_actors::recorder::{RecorderHandle, RecorderStatus};
use gatehouse_actors::registry::{List, RegistryHandle};
use gatehouse_actors::store::retention::{Criteria, PurgeRecord};
use serde::{Deserialize, Serialize};

use crate::console::ConsoleDeps;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Requests are tiny; anything longer is not ours.
const MAX_REQUEST: u64 = 64 << 10;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Purge {
        ended_before: i64,
    },
    Approvals,
    Decide {
        id: String,
        approve: bool,
        /// The operator deciding (an `[[operators]]` entry with approver).
        operator: Option<String>,
        reason: Option<String>,
    },
    /// Turn this connection into an operator console (`gatehouse
    /// console`): JSON lines both ways from here on.
    Console {
        /// The operator the console acts as (`--as`).
        operator: Option<String>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status {
        live_sessions: usize,
        recorder: RecorderStatus,
    },
    Purged(PurgeRecord),
    Approvals {
        pending: Vec<PendingApproval>,
    },
    Decided {
        request: PendingApproval,
    },
    Error {
        message: String,
    },
}

/// Processes the daemon started on an operator's behalf (admin SSH
/// commands), by pid, with how that operator authenticated: a request from
/// one of them is attributed to the endpoint, not to a local user.
pub type Callers = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, String>>>;

/// Serve the socket until the process ends.
pub async fn serve(
    path: PathBuf,
    recorder: RecorderHandle,
    registry: RegistryHandle,
    approvals: BrokerHandle,
    callers: Callers,
    console: Arc<ConsoleDeps>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %path.display(), "control socket ready");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                continue;
            }
        };
        let (recorder, registry, approvals, callers, console) = (
            recorder.clone(),
            registry.clone(),
            approvals.clone(),
            callers.clone(),
            console.clone(),
        );
        actix::spawn(async move {
            if let Err(e) =
                handle(stream, &recorder, &registry, &approvals, &callers, console).await
            {
                tracing::warn!("control request failed: {e:#}");
            }
        });
    }
}

async fn handle(
    stream: UnixStream,
    recorder: &RecorderHandle,
    registry: &RegistryHandle,
    approvals: &BrokerHandle,
    callers: &Callers,
    console: Arc<ConsoleDeps>,
) -> anyhow::Result<()> {
    let who = match stream.peer_cred() {
        Ok(c) => {
            let pid = c.pid().unwrap_or(0);
            let known = callers
                .lock()
                .ok()
                .and_then(|m| m.get(&(pid as u32)).cloned());
            known.unwrap_or_else(|| format!("local cli uid={} pid={pid}", c.uid()))
        }
        Err(_) => "local cli (unknown peer)".to_owned(),
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    (&mut reader).take(MAX_REQUEST).read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(Request::Console { operator }) => {
            let via = who.replace("local cli", "local console");
            tracing::info!(by = %via, operator = ?operator, "console opened");
            let operator = crate::console::Operator {
                name: operator,
                via,
            };
            crate::console::socket::serve(reader, write, console, operator).await;
            return Ok(());
        }
        Err(e) => Response::Error {
            message: format!("bad request: {e}"),
        },
        Ok(Request::Status) => match recorder.status().await {
            Some(status) => Response::Status {
                live_sessions: registry.send(List).await.map(|l| l.len()).unwrap_or(0),
                recorder: status,
            },
            None => Response::Error {
                message: "the recorder is not running".into(),
            },
        },
        Ok(Request::Purge { ended_before }) => {
            tracing::info!(by = %who, ended_before, "purge requested");
            match recorder
                .purge(
                    Criteria {
                        ended_before: Some(ended_before),
                        max_bytes: None,
                    },
                    who,
                )
                .await
            {
                Ok(record) => Response::Purged(record),
                Err(message) => Response::Error { message },
            }
        }
        Ok(Request::Approvals) => match approvals.send(ListPending).await {
            Ok(pending) => Response::Approvals { pending },
            Err(e) => Response::Error {
                message: format!("approval broker unavailable: {e}"),
            },
        },
        Ok(Request::Decide {
            id,
            approve,
            operator,
            reason,
        }) => {
            let decide = Decide {
                id,
                approve,
                operator,
                via: who,
                reason,
            };
            match approvals.send(decide).await {
                Ok(Ok(request)) => Response::Decided { request },
                Ok(Err(message)) => Response::Error { message },
                Err(e) => Response::Error {
                    message: format!("approval broker unavailable: {e}"),
                },
            }
        }
    };
    let mut out = serde_json::to_vec(&response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

/// Send one request to the running daemon.
pub fn request(data_dir: &Path, request: &Request) -> anyhow::Result<Response> {
    use std::io::{BufRead, Write};
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "connecting to the daemon at {} (is `gatehouse serve` running?)",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream).read_line(&mut answer)?;
    serde_json::from_str(&answer).with_context(|| format!("unreadable answer {answer:?}"))
}
