//! The first thing a user tries: psql through the gateway with a token.

use anyhow::Result;
use gatehouse_tests::{Claims, ConfigBuilder, Gatehouse, Issuer, OutputExt, PgCluster};

#[test]
fn psql_select_through_gateway_with_verify_full() -> Result<()> {
    let pg = PgCluster::start()?;
    let issuer = Issuer::start()?;
    let gh = Gatehouse::start(&ConfigBuilder::standard(&issuer, &pg))?;
    let token = issuer.mint(&Claims::new("alice").groups(["ci-deploy"]))?;
    let out = gh.target("app-db", "alice", &token).psql("select 1 + 1")?;
    assert_eq!(out.success_text()?, "2", "log:\n{}", gh.log());
    Ok(())
}
