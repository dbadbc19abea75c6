//! SFTP seen by the gateway: parsed in both directions so path rules hold
//! before a request reaches the target and every file operation is
//! recorded with its outcome, size and SHA-256.
//!
//! Layout:
//! - [`codec`] SFTP v3 packets without I/O: framing, the requests and
//!   replies policy and the recording read, the `STATUS` the gateway
//!   writes.
//! - [`filter`] one channel's conversation: path rules, refusals answered
//!   in the target's place, requests matched to replies, file records.
//! - [`scp`] the legacy scp protocol's command line (`scp -t`/`-f`),
//!   judged by the same path rules; [`scp_stream`] its stream, read for
//!   each file's path, size and SHA-256.

pub mod codec;
pub mod filter;
pub mod scp;
pub mod scp_stream;

pub use filter::{FileOp, SftpFilter};
