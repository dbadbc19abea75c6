//! End-to-end harness for Gatehouse: real servers on loopback, real
//! clients, the real binary.
//!
//! A test assembles the world the gateway lives in — a throwaway
//! PostgreSQL cluster, an OIDC issuer whose keys it controls, the built
//! `gatehouse` daemon with a generated config — and then talks to the
//! gateway with stock `psql` and `pgbench`, the way users do. Everything
//! listens on 127.0.0.1 only, and everything is torn down on drop.
//!
//! # Layout
//!
//! - [`pg`]: [`PgCluster`], a per-test PostgreSQL cluster (run as the
//!   `postgres` user, optional TLS and host auth method).
//! - [`keys`]: the issuer's RSA and EC signing keys and their public JWKs,
//!   generated with the `openssl` CLI.
//! - [`token`]: [`Claims`] and [`Minter`] — good tokens and the classic bad
//!   ones (`alg: none`, HS256 key confusion, tampered or foreign
//!   signatures).
//! - [`issuer`]: [`Issuer`], the loopback OIDC discovery + JWKS server
//!   whose published keys tests change at runtime.
//! - [`config`]: [`ConfigBuilder`], the gateway's TOML config contract.
//! - [`gatehouse`]: [`Gatehouse`], the daemon process with its work
//!   directory, log and CLI.
//! - [`clients`]: [`PgTarget`], running `psql` and `pgbench` against the
//!   gateway or the cluster directly.
//! - [`process`]: running helper programs with a deadline.
//! - [`ports`]: free loopback ports and readiness polling.
//!
//! # Example
//!
//! ```no_run
//! use gatehouse_tests::{Claims, ConfigBuilder, Gatehouse, Issuer, OutputExt, PgCluster};
//!
//! # fn main() -> anyhow::Result<()> {
//! let pg = PgCluster::start()?;
//! let issuer = Issuer::start()?;
//! let gh = Gatehouse::start(&ConfigBuilder::standard(&issuer, &pg))?;
//!
//! let token = issuer.mint(&Claims::new("alice").groups(["ci-deploy"]))?;
//! let out = gh.target("app-db", "alice", &token).psql("select 1")?;
//! assert_eq!(out.success_text()?, "1");
//! # Ok(())
//! # }
//! ```

pub mod clients;
pub mod config;
pub mod gatehouse;
pub mod issuer;
pub mod keys;
pub mod pg;
pub mod ports;
pub mod process;
pub mod token;

pub use clients::{OutputExt, PgTarget, SslMode};
pub use config::{ConfigBuilder, ConnectionSpec, PolicySpec, RoleSpec};
pub use gatehouse::Gatehouse;
pub use issuer::{Issuer, IssuerOptions};
pub use keys::SigningKey;
pub use pg::{HostAuth, PgCluster, PgOptions};
pub use token::{Claims, Minter};
