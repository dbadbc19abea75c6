//! Gatehouse's operator console: watch sessions live, approve or deny
//! held statements, kill sessions, replay and verify recordings — on the
//! appliance's own terminal (`gatehouse console`) or over the admin SSH
//! port, keyboard only, readable on a VT100.
//!
//! The console is a client of the daemon: it sends [`protocol::Request`]s
//! and draws what the daemon pushes as [`protocol::Update`]s. It owns no
//! socket and no tty; the driver runs it on any byte stream.
//!
//! Layout:
//! - [`app`] the state (`App`, its `Mode`) and all input handling;
//!   rendering only reads it.
//! - [`screens`] one file per screen (sessions, approvals, recordings,
//!   live view, replay, help) and the shared frame (title, status line,
//!   key bar).
//! - [`timeline`] events as statements, for the live view and replay;
//!   [`player`] terminal replay with speeds and keyframes; [`pane`] the
//!   emulated terminal widget.
//! - [`keys`] bytes to keys (no I/O); [`backend`] a ratatui backend that
//!   writes VT100-safe sequences into a buffer; [`theme`] styles with and
//!   without colour.
//! - [`driver`] the loop: input, updates, clock, frames; [`tty`] the local
//!   terminal (raw mode, window size).
//! - [`protocol`] what the console and the daemon say to each other.
//!
//! ```no_run
//! # async fn example(link: gatehouse_tui::driver::Link) -> std::io::Result<()> {
//! // On the appliance's own terminal:
//! gatehouse_tui::tty::run_local(link).await
//! # }
//! ```

pub mod app;
pub mod backend;
pub mod driver;
pub mod keys;
pub mod pane;
pub mod player;
pub mod protocol;
pub mod screens;
pub mod theme;
pub mod timeline;
pub mod tty;
