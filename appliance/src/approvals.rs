//! `gatehouse approvals list|approve|deny`: the operator's side of the
//! ApprovalBroker, through the running daemon's control socket.

use gatehouse_actors::recording::format_time;

use crate::config::LoadedConfig;
use crate::control::{Request, Response, request};

pub fn list(cfg: &LoadedConfig, json: bool) -> anyhow::Result<()> {
    match request(&cfg.data_dir, &Request::Approvals)? {
        Response::Approvals { pending } => {
            for p in &pending {
                if json {
                    println!("{}", serde_json::to_string(p)?);
                } else {
                    println!(
                        "{}  {}  {} ({}) on {}  rule {:?}  expires {}\n    {}",
                        p.id,
                        format_time(p.requested_at),
                        p.identity.escape_debug(),
                        p.groups.join(","),
                        p.connection.escape_debug(),
                        p.rule,
                        format_time(p.deadline),
                        p.statement.escape_debug()
                    );
                }
            }
            if pending.is_empty() && !json {
                println!("no pending approvals");
            }
            Ok(())
        }
        Response::Error { message } => anyhow::bail!("{message}"),
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

pub fn decide(
    cfg: &LoadedConfig,
    id: String,
    approve: bool,
    operator: Option<String>,
    reason: Option<String>,
) -> anyhow::Result<()> {
    match request(
        &cfg.data_dir,
        &Request::Decide {
            id,
            approve,
            operator,
            reason,
        },
    )? {
        Response::Decided { request } => {
            println!(
                "{} {} ({} on {})",
                if approve { "approved" } else { "denied" },
                request.id,
                request.identity.escape_debug(),
                request.connection.escape_debug()
            );
            Ok(())
        }
        Response::Error { message } => anyhow::bail!("{message}"),
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}
