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
//!   (HTTP, or HTTPS on a private CA) whose published keys tests change at
//!   runtime.
//! - [`tls`]: [`tls::TestCa`], a private CA and server certificate made
//!   with the `openssl` CLI.
//! - [`providers`]: token claims shaped like GitHub Actions, GitLab CI,
//!   Kubernetes and Keycloak tokens, as their documentation shows them.
//! - [`config`]: [`ConfigBuilder`], the gateway's TOML config contract.
//! - [`gatehouse`]: [`Gatehouse`], the daemon process with its work
//!   directory, log and CLI.
//! - [`clients`]: [`PgTarget`], running `psql`, `pgbench` and Python
//!   scripts with a pinned psycopg (and so a pinned libpq) against the
//!   gateway or the cluster directly.
//! - [`process`]: running helper programs with a deadline.
//! - [`ports`]: free loopback ports and readiness polling.
//! - [`vm`]: the appliance image booted in QEMU ([`Vm`]), its disks and
//!   seed disks.
//! - [`dns`]: [`DnsServer`], a DNS server over TCP for the image's resolver.
//! - [`tmux`]: [`Tmux`], terminal programs in a pseudo-terminal, typed at
//!   and read like a person would.
//! - [`sshd`]: [`Sshd`], a per-test OpenSSH server as the SSH target.
//! - [`ssh_client`]: [`SshWorld`], the gateway's SSH listener in front of
//!   an `Sshd`, driven with stock `ssh`, `scp` and `sftp`.
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
pub mod dns;
pub mod gatehouse;
pub mod issuer;
pub mod keys;
pub mod pg;
pub mod ports;
pub mod process;
pub mod providers;
pub mod ssh_client;
pub mod sshd;
pub mod tls;
pub mod tmux;
pub mod token;
pub mod vm;

pub use clients::{OutputExt, PSYCOPG_LIBPQ17, PSYCOPG_LIBPQ18_0, PgTarget, SslMode};
pub use config::{ConfigBuilder, ConnectionSpec, IssuerSpec, PolicySpec, RoleSpec};
pub use dns::DnsServer;
pub use gatehouse::Gatehouse;
pub use issuer::{Issuer, IssuerOptions};
pub use keys::SigningKey;
pub use pg::{HostAuth, PgCluster, PgOptions};
pub use ssh_client::SshWorld;
pub use sshd::Sshd;
pub use tmux::Tmux;
pub use token::{Claims, Minter};
pub use vm::{Boot, Disk, ImageFiles, Vm, VmSpec};
