//! A client that opens 1,000 channels on one connection (russh as the
//! agent, since stock ssh opens one per process): the first 32 are served,
//! the rest refused with `resource shortage`, the connection and its open
//! channels keep working, another agent is served meanwhile, and the
//! gateway's memory stays bounded.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gatehouse_tests::ssh_client::{AnyHostKey, SSH_CONNECTION};
use gatehouse_tests::{OutputExt, SshWorld};
use russh::ChannelMsg;
use russh::client;

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")
}

/// Run `command` on `channel` and collect its stdout.
async fn run(channel: russh::Channel<client::Msg>, command: &str) -> Result<String> {
    let mut channel = channel;
    channel.exec(true, command).await?;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), channel.wait()).await? {
            Some(ChannelMsg::Data { data }) => out.extend_from_slice(&data),
            Some(ChannelMsg::ExitStatus { .. }) | Some(ChannelMsg::Eof) | None => break,
            Some(_) => {}
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn a_thousand_channels_on_one_connection_are_refused_past_the_limit() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let pid = w.gh.pid().context("gateway pid")?;
    let token = w.token("many-channels")?;
    let auth = w.token_auth(&w.token("bystander")?)?;
    let before = rss_kib(pid)?;
    let rt = tokio::runtime::Runtime::new()?;
    let (opened, refused, alive) = rt.block_on(async {
        let config = Arc::new(client::Config::default());
        let mut session = client::connect(config, ("127.0.0.1", w.port), AnyHostKey).await?;
        let login = session
            .authenticate_password(SSH_CONNECTION, &token)
            .await?;
        if !login.success() {
            bail!("token login refused");
        }
        let mut opened = Vec::new();
        let mut refused = 0;
        for _ in 0..1000 {
            match session.channel_open_session().await {
                Ok(c) => opened.push(c),
                Err(russh::Error::ChannelOpenFailure(
                    russh::ChannelOpenFailure::ResourceShortage,
                )) => refused += 1,
                Err(e) => bail!("unexpected refusal: {e}"),
            }
        }
        let n = opened.len();
        // An open channel still runs a command after all the refusals.
        let last = opened.pop().context("no channel opened")?;
        let alive = run(last, "echo alive").await?;
        Ok::<_, anyhow::Error>((n, refused, alive))
    })?;
    assert_eq!(opened, 32, "channels served");
    assert_eq!(refused, 968);
    assert_eq!(alive.trim(), "alive");
    // Another agent is served while that connection is still open... and
    // after it.
    let out = w.ssh(&auth, SSH_CONNECTION, &["echo bystander"])?;
    assert_eq!(out.success_text()?, "bystander");
    let after = rss_kib(pid)?;
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "the gateway grew by {} KiB",
        after.saturating_sub(before)
    );
    drop(rt);
    Ok(())
}
