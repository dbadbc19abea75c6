//! The parts of the `gatehouse` binary that read untrusted or hand-written
//! text, as a library: the config loader (`config`, with `tls`, which it
//! builds target connections with) and OIDC token verification (`oidc`).
//! The binary uses them from here; the fuzz targets in `fuzz/` reach them
//! the same way (`config_load`, `oidc_header`). Everything else stays in
//! the binary (see `main.rs` for the layout).

pub mod config;
pub mod oidc;
pub mod tls;
