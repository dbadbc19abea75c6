//! The console on an admin SSH channel: `ssh -t -p ADMIN alice@appliance`
//! with no command.
//!
//! The console runs in the daemon, drawing into the channel at the PTY's
//! size; keys come from the channel's data and window changes from its
//! requests. It acts as the operator whose key logged in, and its actions
//! are recorded in that connection's recording. A client that goes away
//! (or stops reading) ends the console without holding anything up: the
//! driver watches the channel while it writes.

use std::sync::Arc;

use gatehouse_actors::recording::EventKind;
use gatehouse_tui::driver::{Input, Link, Options, run};
use gatehouse_tui::theme::Theme;
use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::sync::mpsc;

use super::{ConsoleDeps, Operator};
use crate::admin::Audit;

/// What the client's PTY request said.
#[derive(Debug, Clone)]
pub struct Pty {
    pub term: String,
    pub cols: u16,
    pub rows: u16,
}

fn dim(n: u32, default: u16) -> u16 {
    u16::try_from(n).ok().filter(|n| *n > 0).unwrap_or(default)
}

impl Pty {
    pub fn new(term: &str, cols: u32, rows: u32) -> Pty {
        Pty {
            term: term.to_owned(),
            cols: dim(cols, 80),
            rows: dim(rows, 24),
        }
    }
}

/// Run the console on `channel` until the operator leaves or the client
/// goes away; then send the exit status and close the channel.
pub async fn run_console(
    deps: Arc<ConsoleDeps>,
    channel: Channel<Msg>,
    pty: Pty,
    operator: Operator,
    audit: Audit,
) {
    let (mut reader, writer) = channel.split();
    let (in_tx, in_rx) = mpsc::channel(64);
    let input = tokio::spawn(async move {
        while let Some(msg) = reader.wait().await {
            let input = match msg {
                ChannelMsg::Data { data } => Input::Bytes(data.to_vec()),
                ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    ..
                } => Input::Resize {
                    cols: dim(col_width, 80),
                    rows: dim(row_height, 24),
                },
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => continue,
            };
            if in_tx.send(input).await.is_err() {
                break;
            }
        }
    });
    let (req_tx, req_rx) = mpsc::channel(64);
    let (upd_tx, upd_rx) = mpsc::channel(1024);
    let service = tokio::spawn(super::serve(
        deps,
        operator.clone(),
        audit.clone(),
        req_rx,
        upd_tx,
    ));
    let options = Options {
        theme: Theme::for_terminal(&pty.term, false),
        size: (pty.cols, pty.rows),
    };
    let link = Link {
        requests: req_tx,
        updates: upd_rx,
    };
    let mut out = writer.make_writer();
    let status = match run(in_rx, &mut out, link, options).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::info!(operator = %operator.by(), "console ended: {e}");
            1
        }
    };
    input.abort();
    service.abort();
    audit.note(EventKind::AdminExit { status, bytes: 0 });
    let _ = writer.exit_status(status).await;
    let _ = writer.eof().await;
    let _ = writer.close().await;
}
