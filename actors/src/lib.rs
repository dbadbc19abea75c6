//! Gatehouse's session runtime: the actors that carry agent sessions from
//! the first byte to the last recorded event.
//!
//! Every PostgreSQL connection becomes a [`pg::PgSession`] actor that runs
//! these phases in order, each with a clear failure mode:
//!
//! ```text
//! startup ─▶ authenticate ─▶ authorize ─▶ connect ─▶ relay ───────────▶ closed
//!   TLS        token as        identity →    held        frames cut to     end recorded
//!   startup    password,       roles →       credential  length, tapped    and sealed (closed,
//!   message    TokenVerifier   connection    + TLS mode  for the recorder  refused, failed,
//!                                                        (strict: durable  terminated)
//!                                                        before forwarded)
//! ```
//!
//! Inside the relay, per client message and per result, the policy phases
//! run in a fixed order (see [`policy`]): statement filter (classify → rules
//! → allow / block / hold for an operator) → forward → result filter (mask
//! rows, COPY data, error texts) → record.
//!
//! Layout:
//! - [`pg::codec`] framing and encoders, no I/O; [`pg::messages`] bounds-checked
//!   decoders for the messages the gateway reads.
//! - [`pg::startup`] the client's TLS negotiation and token exchange;
//!   [`pg::upstream`] the target's connection and authentication;
//!   [`pg::cancel`] minted cancel keys.
//! - [`pg::relay`] the two pumps; [`pg::tap`] turns frames into events;
//!   [`pg::gate`] the statement filter (block, hold for approval) on the
//!   client side; [`pg::filter`] the result filter (masking) on the target
//!   side, with [`pg::catalog`] naming result columns.
//! - [`policy`] statement classification (sqlparser), rules, per-session
//!   prepared-statement tracking; [`mask`] detectors, strategies, DataRow and
//!   COPY rewriting; [`approval`] the ApprovalBroker actor.
//! - [`pg::session`] the `PgSession` actor; [`pg::listener`] accept loop and limits.
//! - [`registry`] live sessions and kill; [`recorder`] the single redb writer.
//! - [`recording`] the recording model, its text and asciicast renderings; [`store`] the
//!   on-disk schema ([`store::schema`]), signed seals ([`store::seal`]), chain
//!   verification ([`store::verify`]) and readers.
//! - [`auth`] the token-verification interface the appliance implements;
//!   [`gateway`] what all sessions share; [`error`] errors that know their side.
//!
//! ```no_run
//! # use gatehouse_actors::store::RecordingStore;
//! let store = RecordingStore::open_read_only("recordings.redb".as_ref()).unwrap();
//! for header in store.sessions().unwrap() {
//!     println!("{}", gatehouse_actors::recording::format_header(&header));
//! }
//! ```

pub mod approval;
pub mod auth;
pub mod error;
pub mod gateway;
pub mod mask;
pub mod pg;
pub mod policy;
pub mod recorder;
pub mod recording;
pub mod registry;
pub mod store;
