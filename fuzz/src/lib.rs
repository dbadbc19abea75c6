//! Fuzz targets for every parser on Gatehouse's network paths.
//!
//! Each target is a plain function here, `check(data: &[u8])`, that panics
//! when an invariant breaks. `fuzz_targets/NAME.rs` hands it to libFuzzer
//! (`bash fuzz/run.sh`, with cargo-fuzz), and `tests/corpus.rs` replays the
//! committed corpus through it as an ordinary test on stable Rust, so CI
//! keeps every input that ever found something.
//!
//! Layout:
//! - [`pg_frames`] client side: frame reader, frontend decoders, tap, gate.
//! - [`pg_target`] target side: frame reader, backend decoders against
//!   rust-postgres's parser, tap, the result filter's masking.
//! - [`pg_startup`] the startup negotiation and password exchange.
//! - [`sql_text`] the classifier on any text; [`sql_splice`] on generated
//!   SQL with decoys, against what the statements really do.
//! - [`mask_rows`] DataRow and error-text masking; [`mask_copy`] COPY
//!   text/CSV/binary masking; [`mask_model`] their shared oracle.
//! - [`oidc_header`] the token checks before any signature;
//!   [`config_load`] the config loader (both from the appliance's library).
//! - [`sftp`] an SSH channel's SFTP filter under path rules, both
//!   directions interleaved; [`scp_stream`] the legacy scp stream's file
//!   records, however the stream is cut.
//! - [`ssh_line`] the interactive-shell line reader against a model
//!   shell's echo.
//! - [`wire`] an independent encoder the targets compare the decoders with.

#[cfg(feature = "appliance")]
pub mod config_load;
pub mod mask_copy;
pub mod mask_model;
pub mod mask_rows;
#[cfg(feature = "appliance")]
pub mod oidc_header;
pub mod pg_frames;
pub mod pg_startup;
pub mod pg_target;
pub mod scp_stream;
pub mod sftp;
pub mod sql_splice;
pub mod sql_text;
pub mod ssh_line;
pub mod wire;

/// A target's checks: panics when an invariant breaks.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz_targets/` and `corpus/` name them.
pub const TARGETS: &[(&str, Check)] = &[
    ("pg_frames", pg_frames::check),
    ("pg_target", pg_target::check),
    ("pg_startup", pg_startup::check),
    ("sql_text", sql_text::check),
    ("sql_splice", sql_splice::check),
    ("mask_rows", mask_rows::check),
    ("mask_copy", mask_copy::check),
    ("sftp", sftp::check),
    ("scp_stream", scp_stream::check),
    ("ssh_line", ssh_line::check),
    #[cfg(feature = "appliance")]
    ("oidc_header", oidc_header::check),
    #[cfg(feature = "appliance")]
    ("config_load", config_load::check),
];
