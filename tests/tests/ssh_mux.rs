//! Several session channels on one agent connection, opened one after
//! another by OpenSSH's ControlMaster, each running its own command.
//!
//! In its own test binary, so no other test's load runs beside it: with
//! other tests in parallel, about one run in ten fails with the second or
//! third multiplexed command getting no output and exit status 255 (the
//! master accepted the session; the gateway logs nothing). That race is
//! an open bug (issue 9), not understood yet; alone this test passes.

mod common;

use anyhow::{Context, Result};
use common::{events_of_kind, show_session};
use gatehouse_tests::ssh_client::SSH_CONNECTION;
use gatehouse_tests::{OutputExt, SshWorld};

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
