//! The target side: every authentication method a connection may use, and
//! the bound on a single message from the target. (Which startup settings
//! pass is `pg_startup_options.rs`.)

mod common;

use anyhow::Result;
use common::World;
use gatehouse_tests::{
    Claims, ConfigBuilder, ConnectionSpec, Gatehouse, HostAuth, Issuer, OutputExt, PgCluster,
    PgOptions, RoleSpec,
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

/// SCRAM to a target on TLS: PostgreSQL offers SCRAM-SHA-256-PLUS there
/// and refuses a client that claims it would bind the channel but thinks
/// the server cannot, so the gateway binds the exchange to the target's
/// certificate (tls-server-end-point).
#[test]
fn scram_over_tls_to_the_target_works() -> Result<()> {
    let pg = PgCluster::start_with(PgOptions::default().ssl(true))?;
    let issuer = Issuer::start()?;
    let config = ConfigBuilder::standard(&issuer, &pg)
        .connection(ConnectionSpec::for_cluster("tls-db", &pg).tls("require"))
        .role(RoleSpec::new("tls", &["ci-deploy"], &["tls-db"]));
    let gh = Gatehouse::start(&config)?;
    let token = issuer.mint(&Claims::new("tls-bot").groups(["ci-deploy"]))?;
    let out = common::tls_target(&gh, "tls-db", "tls-bot", &token)
        .psql("select ssl from pg_stat_ssl where pid = pg_backend_pid()")?;
    assert_eq!(
        out.stdout_text(),
        "t",
        "{}; log:\n{}",
        out.stderr_text(),
        gh.log()
    );
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
