//! `gatehouse`: the Gatehouse appliance daemon and its command line.
//!
//! Layout:
//! - `config` the config file's shape, loading and validation.
//! - `oidc` token verification: several issuers matched by `iss`, each
//!   with discovery (optionally on a private CA) or a static key set.
//! - `tls` the listener certificate (configured or generated) and target TLS.
//!   These three are the library target (`lib.rs`), so the fuzz targets in
//!   `fuzz/` reach them too; the binary uses them from there.
//! - `serve` wiring of the actor system, listeners and shutdown; `reload`
//!   what SIGHUP reloads (issuers and their keys, roles, the certificate).
//! - `recordings` the `recordings` subcommands (list, show, verify, export,
//!   status, purge, purges).
//! - `api` the HTTPS API: SSH certificates for tokens, health, metrics.
//! - `admin` the admin SSH endpoint (operators: export, approvals, SFTP);
//!   `sftp_view` the read-only SFTP view of recordings it runs.
//! - `control` the daemon's local control socket and its client.
//! - `console` the operator console's daemon side: the service behind each
//!   open console, on the control socket (`gatehouse console`) or an admin
//!   SSH channel.
//! - `explain` `check-config --explain-token`: what a token would get.
//! - `keyfile` the appliance's own ed25519 keys in `data_dir`.
//! - `login` `gatehouse login`: a token traded for an SSH certificate.
//! - `logging` text or JSON logs.
//!
//! ```text
//! gatehouse check-config --config /etc/gatehouse/gatehouse.toml
//! gatehouse serve --config /etc/gatehouse/gatehouse.toml
//! gatehouse recordings list --config /etc/gatehouse/gatehouse.toml
//! ```

mod admin;
mod api;
mod approvals;
mod console;
mod control;
mod explain;
mod keyfile;
mod logging;
mod login;
mod recordings;
mod reload;
mod serve;
mod sftp_view;

// The config loader and token verification live in the library target
// (`lib.rs`), where the fuzz targets reach them too.
use gatehouse_appliance::{config, oidc, tls};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sessions allocate many small, short-lived buffers and event strings from
/// several threads; mimalloc handles that pattern with less CPU than glibc's
/// allocator (malloc/free were ~8% of the relay's profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Identity-aware access gateway for machines"
)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        default_value = "/etc/gatehouse/gatehouse.toml",
        env = "GATEHOUSE_CONFIG"
    )]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGTERM.
    Serve,
    /// Validate the config file; exits non-zero and names each problem.
    CheckConfig {
        /// Also explain what a sample token (a file holding the JWT) would
        /// get: its claims, issuer, roles, connections, and why each other
        /// role does not match. Exits 1 if the token does not verify.
        #[arg(long, value_name = "FILE")]
        explain_token: Option<PathBuf>,
    },
    /// Read recorded sessions (works while the daemon runs).
    Recordings {
        #[command(subcommand)]
        command: RecordingsCommand,
    },
    /// The operator console: sessions, approvals, recordings (needs the
    /// running daemon and a terminal).
    Console {
        /// The operator to act as: an `[[operators]]` entry (approvals need
        /// one marked approver when such operators exist).
        #[arg(long = "as", value_name = "OPERATOR")]
        operator: Option<String>,
    },
    /// Trade an OIDC token for an SSH certificate from an appliance's API
    /// and write a key, the certificate and known_hosts for stock ssh
    /// (needs no config file).
    Login {
        /// The appliance's API: https://HOST:PORT (`[listen] api`).
        #[arg(long)]
        api: String,
        /// A file holding the token (JWT).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// The CA that signed the appliance's certificate (its
        /// data_dir/tls/ca.crt when generated); default: system roots.
        #[arg(long, value_name = "CA")]
        ca_file: Option<PathBuf>,
        /// Where to write id_ed25519, id_ed25519-cert.pub and known_hosts
        /// (default ~/.gatehouse).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SSH port to use instead of the one the appliance reports
        /// (behind NAT).
        #[arg(long)]
        ssh_port: Option<u16>,
    },
    /// Statements held by `approve` rules (asks the running daemon).
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// Pending requests, oldest first.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Let the held statement run (once).
    Approve {
        id: String,
        /// The deciding operator: an `[[operators]]` entry with approver = true
        /// (required when such operators are configured).
        #[arg(long = "as", value_name = "OPERATOR")]
        operator: Option<String>,
    },
    /// Refuse the held statement; the client gets 42501 with the reason.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long = "as", value_name = "OPERATOR")]
        operator: Option<String>,
    },
}

#[derive(Subcommand)]
enum RecordingsCommand {
    /// One line per session, oldest first.
    List {
        /// JSON Lines: one session header per line.
        #[arg(long)]
        json: bool,
        /// Sessions started at or after: 2026-11-01, an RFC 3339 time, or an age like 1d.
        #[arg(long)]
        since: Option<String>,
        /// Sessions started before (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Only sessions granted by a role that matched this claim:
        /// NAME=VALUE (`*` wildcards; repeat for all of several).
        #[arg(long, value_name = "NAME=VALUE")]
        claim: Vec<String>,
    },
    /// Serve the read-only SFTP view of recordings on stdin/stdout (run by
    /// the admin SSH endpoint for each SFTP session).
    #[command(hide = true)]
    SftpServer,
    /// Recompute hash chains and check seals; non-zero exit when any
    /// recording was altered, truncated or sealed by another key.
    Verify {
        /// Recording id (or a unique prefix of one).
        id: Option<String>,
        /// Every recording.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Verify an exported archive instead of the store (any machine).
        #[arg(long, conflicts_with_all = ["id", "all"])]
        archive: Option<PathBuf>,
        /// Public key (hex) to verify against; default data_dir/recording-signing.pub.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// The recorder's health (asks the running daemon).
    Status,
    /// Remove sealed recordings of sessions that ended before a date; the
    /// purge itself is logged (see `purges`). Asks the running daemon.
    Purge {
        /// 2026-11-01, an RFC 3339 time, or an age like 30d.
        #[arg(long)]
        before: String,
    },
    /// The purge audit log: every removal, manual or by retention.
    Purges,
    /// Write recordings to stdout: one as JSON Lines or an asciicast v2
    /// replay, or any number as a self-verifying .tar.zst archive.
    Export {
        /// Recording id (or a unique prefix of one).
        id: Option<String>,
        /// Sessions started at or after: 2026-11-01, an RFC 3339 time, or an age like 1d.
        #[arg(long, conflicts_with = "id")]
        since: Option<String>,
        /// Sessions started before (same forms as --since).
        #[arg(long, conflicts_with = "id")]
        until: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: recordings::ExportFormat,
    },
    /// A session's header and events.
    Show {
        /// Recording id (or a unique prefix of one).
        id: String,
        /// JSON Lines: the header, then one event per line.
        #[arg(long)]
        json: bool,
    },
}

/// `gatehouse console`: the console on this terminal, against the
/// running daemon.
fn console_local(cfg: &config::LoadedConfig, operator: Option<String>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let link = console::socket::connect(&cfg.data_dir, operator).await?;
        gatehouse_tui::tty::run_local(link).await?;
        anyhow::Ok(())
    });
    // Nothing left to wait for: do not let a pending read keep us here.
    runtime.shutdown_background();
    result
}

fn main() -> ExitCode {
    // Two crypto providers are linked (reqwest brings its own choice); pick
    // one explicitly so rustls never has to guess.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // An archive verifies anywhere: no config, no store.
    if let Command::Recordings {
        command:
            RecordingsCommand::Verify {
                archive: Some(path),
                public_key,
                ..
            },
    } = &cli.command
    {
        return match recordings::verify_archive(path, public_key.as_deref()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(3),
            Err(e) => {
                eprintln!("gatehouse: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // An agent logs in from anywhere: no config, no store.
    if let Command::Login {
        api,
        token_file,
        ca_file,
        dir,
        ssh_port,
    } = cli.command
    {
        return match login::run(login::Login {
            api,
            token_file,
            ca_file,
            dir,
            ssh_port,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gatehouse login: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match config::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::CheckConfig { explain_token } => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", cli.config.display());
            match explain_token {
                None => Ok(()),
                Some(file) => match explain::run(&cfg, &file) {
                    Ok(true) => Ok(()),
                    Ok(false) => return ExitCode::FAILURE,
                    Err(e) => Err(e),
                },
            }
        }
        Command::Serve => serve::run(cfg),
        Command::Console { operator } => console_local(&cfg, operator),
        Command::Login { .. } => unreachable!("handled before the config is loaded"),
        Command::Recordings { command } => match command {
            RecordingsCommand::List {
                json,
                since,
                until,
                claim,
            } => recordings::list(&cfg, json, since.as_deref(), until.as_deref(), &claim),
            RecordingsCommand::SftpServer => sftp_view::run(&cfg),
            RecordingsCommand::Show { id, json } => recordings::show(&cfg, &id, json),
            RecordingsCommand::Status => recordings::status(&cfg),
            RecordingsCommand::Purge { before } => recordings::purge(&cfg, &before),
            RecordingsCommand::Purges => recordings::purges(&cfg),
            RecordingsCommand::Export {
                id,
                since,
                until,
                format,
            } => recordings::export(
                &cfg,
                recordings::Selection {
                    id: id.as_deref(),
                    since: since.as_deref(),
                    until: until.as_deref(),
                },
                format,
            ),
            RecordingsCommand::Verify {
                id,
                all,
                public_key,
                ..
            } => match recordings::verify(&cfg, id.as_deref(), all, public_key.as_deref()) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(3),
                Err(e) => Err(e),
            },
        },
        Command::Approvals { command } => match command {
            ApprovalsCommand::List { json } => approvals::list(&cfg, json),
            ApprovalsCommand::Approve { id, operator } => {
                approvals::decide(&cfg, id, true, operator, None)
            }
            ApprovalsCommand::Deny {
                id,
                reason,
                operator,
            } => approvals::decide(&cfg, id, false, operator, reason),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
