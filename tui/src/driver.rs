//! The console's loop: keys in, daemon updates in, frames out.
//!
//! The same loop serves the local tty and an SSH channel: it reads
//! [`Input`] (bytes typed, window changes) from a channel, talks to the
//! daemon through a [`Link`], and writes ANSI frames to any `AsyncWrite`.
//! Frames are diffs (ratatui keeps the previous screen), drawn after each
//! batch of input or updates, so a busy feed costs a few hundred bytes a
//! second. A write that cannot complete (an SSH client that stopped
//! reading, or left) never blocks the loop from noticing the input side
//! close.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::layout::{Rect, Size};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::app::App;
use crate::backend::AnsiBackend;
use crate::keys::{Key, decode_all, lone_escape};
use crate::protocol::{Request, Update};
use crate::theme::Theme;

/// What the terminal side sends the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Bytes(Vec<u8>),
    Resize { cols: u16, rows: u16 },
}

/// The console's connection to the daemon.
pub struct Link {
    pub requests: mpsc::Sender<Request>,
    pub updates: mpsc::Receiver<Update>,
}

pub struct Options {
    pub theme: Theme,
    /// Columns and rows at start.
    pub size: (u16, u16),
}

/// How long a lone ESC waits for the rest of a sequence before it is the
/// Esc key (a VT100 on a slow line sends sequences byte by byte).
const ESC_WAIT: Duration = Duration::from_millis(60);
/// The clock while something plays, and otherwise (countdowns, durations).
const FAST_TICK: Duration = Duration::from_millis(40);
const SLOW_TICK: Duration = Duration::from_secs(1);
/// Updates applied before a frame is drawn: a burst is drawn once.
const UPDATES_PER_FRAME: usize = 1000;
/// Input kept while a frame is being written.
const MAX_BACKLOG: usize = 256;
/// Smallest terminal the console lays out for.
const MIN_SIZE: (u16, u16) = (20, 5);

fn area(cols: u16, rows: u16) -> Rect {
    Rect::new(0, 0, cols.max(MIN_SIZE.0), rows.max(MIN_SIZE.1))
}

/// Run the console until the operator leaves, the input ends or the
/// daemon goes away.
pub async fn run<W: AsyncWrite + Unpin>(
    mut input: mpsc::Receiver<Input>,
    out: &mut W,
    mut link: Link,
    options: Options,
) -> std::io::Result<()> {
    let now = gatehouse_actors::recorder::now_micros;
    let (cols, rows) = options.size;
    let mut app = App::new(options.theme, now());
    app.resize(cols, rows);
    let full = area(cols, rows);
    let backend = AnsiBackend::new(Size::new(full.width, full.height), options.theme.colour);
    let mut term = match Terminal::new(backend) {
        Ok(t) => t,
        Err(never) => match never {},
    };
    out.write_all(AnsiBackend::enter()).await?;
    let mut pending: Vec<u8> = Vec::new();
    let mut backlog: Vec<Input> = Vec::new();
    let mut last_tick = Instant::now();
    let mut lost = false;
    loop {
        let Ok(_) = term.draw(|f| f.render_widget(&app, f.area()));
        let mut frame = term.backend_mut().take();
        if std::mem::take(&mut app.bell) {
            frame.push(0x07);
        }
        if !frame.is_empty() && !write(out, &frame, &mut input, &mut backlog).await? {
            return Ok(());
        }
        if app.quit || lost {
            break;
        }
        let inputs: Vec<Input> = if backlog.is_empty() {
            let tick = if app.animating() {
                FAST_TICK
            } else {
                SLOW_TICK
            };
            let wait = tick.saturating_sub(last_tick.elapsed());
            tokio::select! {
                i = input.recv() => match i {
                    Some(i) => vec![i],
                    None => return Ok(()),
                },
                u = link.updates.recv() => {
                    match u {
                        Some(u) => apply(&mut app, u, &mut link).await,
                        None => lost = true,
                    }
                    let mut n = 0;
                    while n < UPDATES_PER_FRAME && let Ok(u) = link.updates.try_recv() {
                        apply(&mut app, u, &mut link).await;
                        n += 1;
                    }
                    Vec::new()
                }
                _ = tokio::time::sleep(ESC_WAIT), if lone_escape(&pending) => {
                    pending.clear();
                    press(&mut app, Key::Esc, &mut link).await;
                    Vec::new()
                }
                _ = tokio::time::sleep(wait) => {
                    app.tick(now(), last_tick.elapsed());
                    last_tick = Instant::now();
                    Vec::new()
                }
            }
        } else {
            std::mem::take(&mut backlog)
        };
        for i in inputs {
            match i {
                Input::Bytes(b) => {
                    pending.extend_from_slice(&b);
                    for key in decode_all(&mut pending) {
                        if key == Key::Redraw {
                            let Ok(()) = term.clear();
                        } else {
                            press(&mut app, key, &mut link).await;
                        }
                    }
                }
                Input::Resize { cols, rows } => {
                    app.resize(cols, rows);
                    let full = area(cols, rows);
                    term.backend_mut()
                        .resize(Size::new(full.width, full.height));
                    let Ok(()) = term.resize(full);
                }
            }
        }
    }
    out.write_all(AnsiBackend::leave()).await?;
    out.flush().await?;
    if lost {
        return Err(std::io::Error::other(
            "the connection to the daemon was lost",
        ));
    }
    Ok(())
}

async fn send(link: &mut Link, requests: Vec<Request>) {
    for r in requests {
        // The daemon side ended: the updates channel says so too.
        let _ = link.requests.send(r).await;
    }
}

async fn press(app: &mut App, key: Key, link: &mut Link) {
    let requests = app.handle_key(key);
    send(link, requests).await;
}

async fn apply(app: &mut App, update: Update, link: &mut Link) {
    let requests = app.apply(update);
    send(link, requests).await;
}

/// Write a frame while still watching the input: returns false when the
/// input side closed (the client is gone) before the frame went out.
/// Input that arrives meanwhile is kept, within bounds, for afterwards.
async fn write<W: AsyncWrite + Unpin>(
    out: &mut W,
    frame: &[u8],
    input: &mut mpsc::Receiver<Input>,
    backlog: &mut Vec<Input>,
) -> std::io::Result<bool> {
    let writing = async {
        out.write_all(frame).await?;
        out.flush().await
    };
    tokio::pin!(writing);
    loop {
        tokio::select! {
            r = &mut writing => return r.map(|()| true),
            i = input.recv() => match i {
                Some(i) if backlog.len() < MAX_BACKLOG => backlog.push(i),
                Some(_) => {}
                None => return Ok(false),
            },
        }
    }
}
