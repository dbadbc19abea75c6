//! Several session channels on one agent connection, opened one after
//! another by OpenSSH's ControlMaster, each running its own command.
//!
//! Under load about one run in ten used to fail: a multiplexed command got
//! no output and exit status 255. sshd sends EOF, then the exit status,
//! then CLOSE; the gateway passed the EOF on at once, the master (whose
//! input had ended) answered it with CLOSE, russh answered that CLOSE for
//! the gateway, and the exit status that followed had no channel left.
//! The gateway now holds the target's EOF until the exit status; the
//! second test checks that order directly, without depending on timing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{events_of_kind, show_session};
use gatehouse_tests::ssh_client::{AnyHostKey, SSH_CONNECTION};
use gatehouse_tests::{OutputExt, SshWorld};
use russh::ChannelMsg;
use russh::client;

#[test]
fn several_channels_on_one_connection() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let auth = w.token_auth(&w.token("multi")?)?;
    // ControlMaster multiplexes the second and third commands over the
    // first connection, as separate session channels.
    let control = w.client_dir.path().join("mux");
    let mut opts: Vec<String> = vec![
        "-o".into(),
        "ControlMaster=auto".into(),
        "-o".into(),
        format!("ControlPath={}", control.display()),
        "-o".into(),
        "ControlPersist=10".into(),
    ];
    let mut a = auth.clone();
    a.options.append(&mut opts);
    for i in 0..3 {
        let out = w.ssh(&a, SSH_CONNECTION, &[&format!("echo channel-{i}")])?;
        assert_eq!(out.success_text()?, format!("channel-{i}"));
    }
    let _ = w.ssh(&a, SSH_CONNECTION, &["-O", "exit"]);
    let sessions = common::ended_sessions(&w.gh, "ssh", 1)?;
    let (_, events) = show_session(&w.gh, sessions[0]["id"].as_str().context("id")?)?;
    assert_eq!(events_of_kind(&events, "ssh_start").len(), 3, "{events:#?}");
    Ok(())
}

#[test]
fn the_exit_status_reaches_the_agent_before_the_end_of_output() -> Result<()> {
    let w = SshWorld::start(|c, _| c)?;
    let token = w.token("eof-order")?;
    let rt = tokio::runtime::Runtime::new()?;
    let seen = rt.block_on(async {
        let config = Arc::new(client::Config::default());
        let mut session = client::connect(config, ("127.0.0.1", w.port), AnyHostKey).await?;
        if !session
            .authenticate_password(SSH_CONNECTION, &token)
            .await?
            .success()
        {
            bail!("token login refused");
        }
        let mut seen = Vec::new();
        for i in 0..5 {
            let mut channel = session.channel_open_session().await?;
            channel.exec(true, format!("echo order-{i}")).await?;
            // Input ends at once, as ControlMaster's does for `ssh host cmd`.
            channel.eof().await?;
            let mut order = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_secs(20), channel.wait()).await? {
                    Some(ChannelMsg::Data { .. }) => order.push("data"),
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        assert_eq!(exit_status, 0);
                        order.push("exit-status")
                    }
                    Some(ChannelMsg::Eof) => order.push("eof"),
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                }
            }
            order.dedup();
            seen.push(order);
        }
        Ok(seen)
    })?;
    // sshd may send the exit status before the last output (it reports
    // the child's exit as soon as it reaps it), so only the output's
    // presence and "exit status before EOF" are certain.
    for order in &seen {
        let at = |what: &str| order.iter().position(|o| *o == what);
        assert!(at("data").is_some(), "no output: {seen:?}");
        let (Some(status), Some(eof)) = (at("exit-status"), at("eof")) else {
            panic!("no exit status or no EOF: {seen:?}");
        };
        assert!(status < eof, "EOF before the exit status: {seen:?}");
    }
    Ok(())
}
