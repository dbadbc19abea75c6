//! The target side: every authentication method a connection may use, the
//! startup parameters a client may not smuggle through, and the bound on a
//! single message from the target.

mod common;

use std::process::Command;

use anyhow::Result;
use common::World;
use gatehouse_tests::{
    Claims, ConfigBuilder, Gatehouse, HostAuth, Issuer, OutputExt, PgCluster, PgOptions,
};

/// A gateway in front of a cluster whose host lines use `auth`.
fn through(auth: HostAuth) -> Result<()> {
    let pg = PgCluster::start_with(PgOptions::default().host_auth(auth))?;
    let issuer = Issuer::start()?;
    let gh = Gatehouse::start(&ConfigBuilder::standard(&issuer, &pg))?;
    let token = issuer.mint(&Claims::new("auth-bot").groups(["ci-deploy"]))?;
    let out = gh
        .target("app-db", "auth-bot", &token)
        .psql("select current_user")?;
    assert_eq!(out.success_text()?, "gatehouse", "log:\n{}", gh.log());
    Ok(())
}

#[test]
fn md5_upstream_works() -> Result<()> {
    through(HostAuth::Md5)
}

#[test]
fn cleartext_upstream_works_on_loopback() -> Result<()> {
    through(HostAuth::Password)
}

#[test]
fn trust_upstream_works() -> Result<()> {
    through(HostAuth::Trust)
}

#[test]
fn client_options_cannot_override_server_settings() -> Result<()> {
    let w = World::standard()?;
    let token = w.token("options-bot")?;
    let target = w.tls_target("app-db", "options-bot", &token);
    let mut cmd = Command::new("psql");
    target.apply_env(&mut cmd);
    let out = cmd
        .env("PGOPTIONS", "-c statement_timeout=1234")
        .env("PGAPPNAME", "forwarded-app")
        .args([
            "-X",
            "-w",
            "-A",
            "-t",
            "-c",
            "show statement_timeout",
            "-c",
            "show application_name",
        ])
        .output()?;
    let text = out.success_text()?;
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["0", "forwarded-app"],
        "{text}"
    );
    Ok(())
}

#[test]
fn an_oversized_target_message_ends_only_that_session() -> Result<()> {
    let w = World::start(|c, _, _| c.line_in("limits", "max_target_message_bytes = 1048576"))?;
    let token = w.token("big-row-bot")?;
    let fits = w.psql("big-row-bot", &token, "select length(repeat('x', 500000))")?;
    assert_eq!(fits.success_text()?, "500000");
    let big = w.psql("big-row-bot", &token, "select repeat('x', 2000000)")?;
    assert!(!big.status.success());
    assert!(
        big.stderr_text().contains("connection \"app-db\" failed"),
        "{}",
        big.stderr_text()
    );
    let after = w.psql("big-row-bot", &token, "select 1")?;
    assert_eq!(after.success_text()?, "1");
    assert!(w.log().contains("over the limit of 1048576"), "{}", w.log());
    Ok(())
}

#[test]
fn a_fast_path_function_call_is_relayed_and_recorded_with_its_arguments() -> Result<()> {
    use common::{RawPg, frame};
    let w = World::start(|c, _, _| c.postgres_plaintext(true))?;
    let oid: i32 =
        w.pg.psql_direct("app", "select 'abs(integer)'::regprocedure::oid")?
            .parse()?;
    let token = w.token("fastpath-bot")?;
    let mut pg = RawPg::connect(w.gh.pg_port())?;
    pg.login_ok("fastpath-bot", "app-db", &token)?;

    // FunctionCall: oid, one text format, one argument, text result.
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 1, 0, 0, 0, 1]);
    body.extend_from_slice(&3i32.to_be_bytes());
    body.extend_from_slice(b"-42");
    body.extend_from_slice(&[0, 0]);
    pg.send(&frame(b'F', &body))?;
    let replies = pg.until_ready()?;
    let tags: Vec<(char, String)> = replies
        .iter()
        .map(|m| (m.tag as char, m.message()))
        .collect();
    let result = replies
        .iter()
        .find(|m| m.tag == b'V')
        .unwrap_or_else(|| panic!("no FunctionCallResponse: {tags:?}"));
    assert!(result.body.ends_with(b"42"), "{:?}", result.body);
    pg.terminate()?;

    let header = common::ended_session_of_user(&w.gh, "fastpath-bot")?;
    let (_, events) = common::show_session(&w.gh, &common::session_id(&header)?)?;
    let call = events
        .iter()
        .find(|e| common::kind_of(e) == "function_call")
        .expect("the call is recorded");
    assert_eq!(call["kind"]["oid"], oid);
    assert_eq!(call["kind"]["args"], serde_json::json!(["-42"]));
    Ok(())
}
