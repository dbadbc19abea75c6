//! The console over the control socket: `gatehouse console` on the box.
//!
//! The client's first line is the control request `{"op":"console"}`
//! (with the operator it acts as, from `--as`); from then on the
//! connection carries JSON lines both ways — console [`Request`]s in,
//! [`Update`]s out — until either side closes it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use gatehouse_tui::driver::Link;
use gatehouse_tui::protocol::{Request, Update};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::{ConsoleDeps, Operator};
use crate::admin::Audit;

/// A console request is small; a longer line is not one.
const MAX_REQUEST_LINE: u64 = 64 << 10;
/// Requests and updates in flight between the socket and the service.
const REQUESTS: usize = 64;
const UPDATES: usize = 1024;

/// Serve a console on a control connection whose first line asked for it.
pub async fn serve(
    mut reader: impl AsyncBufRead + Unpin,
    mut writer: impl AsyncWrite + Unpin,
    deps: Arc<ConsoleDeps>,
    operator: Operator,
) {
    let audit = Audit::open_local(
        deps.recorder.clone(),
        &operator.via,
        operator.name.as_deref(),
    );
    let (req_tx, req_rx) = mpsc::channel(REQUESTS);
    let (upd_tx, mut upd_rx) = mpsc::channel(UPDATES);
    let service = actix::spawn(super::serve(deps, operator, audit, req_rx, upd_tx));
    let reading = async {
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_REQUEST_LINE)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            match serde_json::from_slice::<Request>(&line) {
                Ok(r) => {
                    if req_tx.send(r).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("console request unreadable: {e}"),
            }
        }
    };
    let writing = async {
        while let Some(u) = upd_rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&u) else {
                continue;
            };
            line.push(b'\n');
            if writer.write_all(&line).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reading => {}
        _ = writing => {}
    }
    service.abort();
}

/// Connect `gatehouse console` to the running daemon: the returned link
/// carries requests and updates over the control socket.
pub async fn connect(data_dir: &Path, operator: Option<String>) -> anyhow::Result<Link> {
    let path = crate::control::socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "connecting to the daemon at {} (is `gatehouse serve` running? the console runs as root)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut hello = serde_json::to_vec(&crate::control::Request::Console { operator })?;
    hello.push(b'\n');
    write.write_all(&hello).await?;
    let (req_tx, mut req_rx) = mpsc::channel::<Request>(REQUESTS);
    let (upd_tx, upd_rx) = mpsc::channel::<Update>(UPDATES);
    tokio::spawn(async move {
        while let Some(r) = req_rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&r) else {
                continue;
            };
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let update = match serde_json::from_str::<Update>(&line) {
                Ok(u) => u,
                Err(e) => Update::Failed {
                    message: format!("unreadable answer from the daemon: {e}"),
                },
            };
            if upd_tx.send(update).await.is_err() {
                return;
            }
        }
    });
    Ok(Link {
        requests: req_tx,
        updates: upd_rx,
    })
}
