//! Gatehouse's session runtime: the actors that carry agent sessions from
//! the first byte to the last recorded event.
//!
//! Every PostgreSQL connection becomes a [`pg::PgSession`] actor (and every
//! SSH connection an [`ssh::SshSession`], same shape, see [`ssh`]) that runs
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
//!   decoders for the messages the gateway reads; [`pg::encoding`] the
//!   session's client encoding, which text is decoded with.
//! - [`pg::startup`] the client's TLS negotiation and token exchange;
//!   [`pg::options`] the startup settings a connection allows;
//!   [`pg::upstream`] the target's connection and authentication;
//!   [`pg::cancel`] minted cancel keys.
//! - [`pg::relay`] the two pumps; [`pg::tap`] turns frames into events,
//!   with [`pg::client_mask`] masking what the client sends (SQL literals,
//!   Bind parameters) and [`pg::copy_record`] its COPY FROM data for the
//!   recording;
//!   [`pg::gate`] the statement filter (block, hold for approval) on the
//!   client side; [`pg::filter`] the result filter (masking) on the target
//!   side, with [`pg::catalog`] naming result columns.
//! - [`policy`] statement classification (sqlparser), rules, per-session
//!   prepared-statement tracking; [`mask`] detectors, strategies, DataRow and
//!   COPY rewriting; [`approval`] the ApprovalBroker actor.
//! - [`pg::session`] the `PgSession` actor; [`pg::listener`] PostgreSQL on
//!   the shared [`listener`] (accept loop, session limit, the `Protocol`
//!   trait both protocols implement); [`lifecycle`] the recorded life every
//!   session shares (header, end, registration, panics).
//! - [`ssh`] the SSH gateway: [`ssh::session`] the `SshSession` actor,
//!   [`ssh::handler`] login and channels, [`ssh::upstream`] the pinned
//!   target, [`ssh::channel`] one channel's relay (its shell lines and file
//!   transfers), [`ssh::forward`] allowed port forwards, [`ssh::line`] the
//!   command line read off a vt100 screen, [`ssh::sftp`] SFTP parsed both
//!   ways and the legacy scp command line, [`ssh::policy`] command and
//!   path rules, env allowlist; [`mask::stream`] masks its output.
//! - [`registry`] live sessions, their counters, and kill; [`recorder`] the
//!   single redb writer; [`feed`] the bounded queues that carry sessions,
//!   approvals and watched events to operator consoles without ever making
//!   a session wait; [`metrics`] process-wide counters (sessions ended,
//!   bytes relayed).
//! - [`recording`] the recording model, its text and asciicast renderings; [`store`] the
//!   on-disk schema ([`store::schema`]), signed seals ([`store::seal`]), chain
//!   verification ([`store::verify`]) and readers.
//! - [`auth`] the verified identity, the token-verification interface the
//!   appliance implements, and identity-carrying SSH user certificates;
//!   [`access`] roles matched on issuer, groups and claims (authorize);
//!   [`gateway`] what all sessions share; [`error`] errors that know their side.
//!
//! ```no_run
//! # use gatehouse_actors::store::RecordingStore;
//! let store = RecordingStore::open_read_only("recordings.redb".as_ref()).unwrap();
//! for header in store.sessions().unwrap() {
//!     println!("{}", gatehouse_actors::recording::format_header(&header));
//! }
//! ```

pub mod access;
pub mod approval;
pub mod auth;
pub mod error;
pub mod feed;
pub mod gateway;
pub mod lifecycle;
pub mod listener;
pub mod mask;
pub mod metrics;
pub mod pg;
pub mod policy;
pub mod recorder;
pub mod recording;
pub mod registry;
pub mod ssh;
pub mod store;
