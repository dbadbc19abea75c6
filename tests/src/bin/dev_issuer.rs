//! `gatehouse-dev-issuer`: the test issuer as a standalone program, for the
//! README demo.
//!
//! ```text
//! gatehouse-dev-issuer serve --dir DIR [--port N]
//! gatehouse-dev-issuer mint  --dir DIR --issuer URL --sub NAME [--groups g1,g2]
//!                            [--ttl SECS] [--aud AUD] [--alg RS256|ES256]
//! ```
//!
//! `serve` prints the issuer URL and runs until killed; `mint` prints a
//! token signed with the keys in `DIR`, so tokens minted later verify
//! against the running issuer. Arguments are parsed by hand: two commands
//! do not justify a parser dependency.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use gatehouse_tests::issuer::{Issuer, IssuerOptions};
use gatehouse_tests::keys::KeySet;
use gatehouse_tests::token::{Claims, Minter};
use jsonwebtoken::Algorithm;

const USAGE: &str = "usage:
  gatehouse-dev-issuer serve --dir DIR [--port N]
  gatehouse-dev-issuer mint --dir DIR --issuer URL --sub NAME [--groups g1,g2] [--ttl SECS] [--aud AUD] [--alg RS256|ES256]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse-dev-issuer: {e:#}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("missing command");
    };
    let flags = parse_flags(rest)?;
    match command.as_str() {
        "serve" => serve(&flags),
        "mint" => mint(&flags),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}"),
    }
}

/// `--name value` pairs; every flag takes exactly one value.
fn parse_flags(args: &[String]) -> Result<HashMap<String, String>> {
    let mut flags = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let name = arg
            .strip_prefix("--")
            .ok_or_else(|| anyhow!("unexpected argument {arg:?}"))?;
        let value = it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?;
        flags.insert(name.to_string(), value.clone());
    }
    Ok(flags)
}

fn required<'a>(flags: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    flags
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("--{name} is required"))
}

fn serve(flags: &HashMap<String, String>) -> Result<()> {
    let dir = PathBuf::from(required(flags, "dir")?);
    let port = match flags.get("port") {
        Some(p) => p.parse().with_context(|| format!("bad --port {p:?}"))?,
        None => 0,
    };
    let issuer = Issuer::start_with(IssuerOptions {
        key_dir: Some(dir),
        port,
        ..IssuerOptions::default()
    })?;
    println!("{}", issuer.url());
    // The demo script reads the URL from a pipe; make sure it arrives.
    std::io::stdout()
        .flush()
        .context("writing the issuer URL")?;
    loop {
        std::thread::park();
    }
}

fn mint(flags: &HashMap<String, String>) -> Result<()> {
    let dir = PathBuf::from(required(flags, "dir")?);
    let issuer = required(flags, "issuer")?;
    let sub = required(flags, "sub")?;
    let mut claims = Claims::new(sub);
    if let Some(groups) = flags.get("groups") {
        claims = claims.groups(groups.split(',').map(str::trim).filter(|g| !g.is_empty()));
    }
    if let Some(ttl) = flags.get("ttl") {
        let ttl: i64 = ttl.parse().with_context(|| format!("bad --ttl {ttl:?}"))?;
        claims = claims.exp_in(ttl);
    }
    if let Some(aud) = flags.get("aud") {
        claims = claims.aud(aud);
    }
    if let Some(alg) = flags.get("alg") {
        claims = claims.alg(match alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => bail!("unsupported --alg {other:?} (RS256 or ES256)"),
        });
    }
    let keys = KeySet::load_or_generate(&dir)?;
    let token = Minter::new(Arc::new(keys), issuer).mint(&claims)?;
    println!("{token}");
    Ok(())
}
