//! `gatehouse`: the Gatehouse appliance daemon and its command line.
//!
//! Layout:
//! - `config` the config file's shape, loading and validation.
//! - `oidc` token verification (discovery, JWKS cache, claims).
//! - `tls` the listener certificate (configured or generated) and target TLS.
//! - `serve` wiring of the actor system, listeners and shutdown.
//! - `recordings` the `recordings` subcommands (list, show, verify, export,
//!   status, purge, purges).
//! - `admin` the admin SSH endpoint (operators: export, approvals, SFTP);
//!   `sftp_view` the read-only SFTP view of recordings it runs.
//! - `control` the daemon's local control socket and its client.
//! - `logging` text or JSON logs.
//!
//! ```text
//! gatehouse check-config --config /etc/gatehouse/gatehouse.toml
//! gatehouse serve --config /etc/gatehouse/gatehouse.toml
//! gatehouse recordings list --config /etc/gatehouse/gatehouse.toml
//! ```

mod admin;
mod approvals;
mod config;
mod control;
mod logging;
mod oidc;
mod recordings;
mod serve;
mod sftp_view;
mod tls;

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
    CheckConfig,
    /// Read recorded sessions (works while the daemon runs).
    Recordings {
        #[command(subcommand)]
        command: RecordingsCommand,
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
    let cfg = match config::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::CheckConfig => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", cli.config.display());
            Ok(())
        }
        Command::Serve => serve::run(cfg),
        Command::Recordings { command } => match command {
            RecordingsCommand::List { json, since, until } => {
                recordings::list(&cfg, json, since.as_deref(), until.as_deref())
            }
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
