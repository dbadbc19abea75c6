//! The appliance's own terminal: raw mode, its size, its input.
//!
//! `gatehouse console` puts the controlling terminal in raw mode (keys
//! arrive as typed, nothing is echoed) and restores it however the console
//! ends. Input is read without a blocking thread (a thread stuck in
//! `read` would keep the process alive after the console quits), and
//! window changes arrive by SIGWINCH.

use std::io;
use std::os::fd::RawFd;

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::driver::{Input, Link, Options, run};
use crate::theme::Theme;

const STDIN: RawFd = 0;
const STDOUT: RawFd = 1;

/// Raw mode and non-blocking input until dropped.
struct RawMode {
    saved: libc::termios,
    flags: libc::c_int,
}

impl RawMode {
    fn enable() -> io::Result<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(STDIN, &mut saved) } != 0 {
            return Err(io::Error::other(
                "the console needs a terminal (run it from a tty, or over ssh -t)",
            ));
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Output post-processing stays as it was: frames use \r\n anyway.
        raw.c_oflag = saved.c_oflag;
        if unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: F_GETFL/F_SETFL on our own stdin.
        let flags = unsafe { libc::fcntl(STDIN, libc::F_GETFL) };
        if flags < 0 || unsafe { libc::fcntl(STDIN, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            let e = io::Error::last_os_error();
            unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &saved) };
            return Err(e);
        }
        Ok(RawMode { saved, flags })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring what `enable` saved, on the same descriptor.
        unsafe {
            libc::fcntl(STDIN, libc::F_SETFL, self.flags);
            libc::tcsetattr(STDIN, libc::TCSANOW, &self.saved);
        }
    }
}

/// The terminal's columns and rows, if it says.
pub fn window_size() -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it or fails.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(STDOUT, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Read what is typed into `tx` until the console stops listening.
async fn read_keys(tx: mpsc::Sender<Input>) -> io::Result<()> {
    // SAFETY: stdin stays open for the life of the process, and only this
    // task reads it while the console runs.
    let fd = unsafe { AsyncFd::register(STDIN) }.map_err(io::Error::from)?;
    let mut buf = [0u8; 1024];
    loop {
        let mut ready = fd.readable().await?;
        // SAFETY: reading into our own buffer from our own stdin.
        let n = unsafe { libc::read(STDIN, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                ready.clear_ready();
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        if tx
            .send(Input::Bytes(buf[..n as usize].to_vec()))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Run the console on this process's terminal.
pub async fn run_local(link: Link) -> io::Result<()> {
    let term = std::env::var("TERM").unwrap_or_default();
    let theme = Theme::for_terminal(&term, std::env::var_os("NO_COLOR").is_some());
    let size = window_size().unwrap_or((80, 24));
    let raw = RawMode::enable()?;
    let (tx, rx) = mpsc::channel(64);
    let keys = tokio::spawn(read_keys(tx.clone()));
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let resizes = tokio::spawn(async move {
        while winch.recv().await.is_some() {
            if let Some((cols, rows)) = window_size()
                && tx.send(Input::Resize { cols, rows }).await.is_err()
            {
                break;
            }
        }
    });
    let mut out = tokio::io::stdout();
    let result = run(rx, &mut out, link, Options { theme, size }).await;
    keys.abort();
    resizes.abort();
    drop(raw);
    result
}
