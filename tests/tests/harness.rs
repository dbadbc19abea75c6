//! Tests of the harness itself — everything that works without the
//! gatehouse binary: the throwaway cluster, the issuer's HTTP endpoints and
//! keys, token minting (good and bad), the stock clients and the config
//! contract.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use gatehouse_tests::{
    Claims, ConfigBuilder, ConnectionSpec, HostAuth, Issuer, OutputExt, PgCluster, PgOptions,
    PolicySpec, RoleSpec, SigningKey, SslMode,
};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

/// GET over a raw socket, returning (status, body), so the test checks the
/// HTTP the gateway's client will actually see.
fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no header end: {response}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("no status: {head}"))?
        .parse()?;
    let lower = head.to_ascii_lowercase();
    if !lower.contains("connection: close") || !lower.contains("content-type: application/json") {
        bail!("missing headers: {head}");
    }
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .ok_or_else(|| anyhow!("no content-length: {head}"))?
        .trim()
        .parse()?;
    if length != body.len() {
        bail!("content-length {length} but body has {} bytes", body.len());
    }
    Ok((status, body.to_string()))
}

fn fetch_jwks(issuer: &Issuer) -> Result<JwkSet> {
    let (status, body) = http_get(issuer.port(), "/jwks")?;
    if status != 200 {
        bail!("jwks status {status}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Verifies `token` the way a correct gateway would: kid from the header,
/// key from the served JWKS, algorithm pinned by the JWK, audience and
/// issuer checked.
fn verify(issuer: &Issuer, token: &str) -> Result<Value> {
    let jwks = fetch_jwks(issuer)?;
    let header = decode_header(token)?;
    let kid = header.kid.context("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| anyhow!("kid {kid} not in JWKS"))?;
    let alg = match jwk.common.key_algorithm.context("jwk has no alg")? {
        jsonwebtoken::jwk::KeyAlgorithm::RS256 => Algorithm::RS256,
        jsonwebtoken::jwk::KeyAlgorithm::ES256 => Algorithm::ES256,
        other => bail!("unexpected alg {other:?}"),
    };
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&["gatehouse"]);
    validation.set_issuer(&[issuer.url()]);
    Ok(decode::<Value>(token, &key, &validation)?.claims)
}

#[test]
fn cluster_answers_select_1() -> Result<()> {
    let pg = PgCluster::start()?;
    assert_eq!(pg.psql_direct("app", "select 1")?, "1");
    assert_eq!(pg.psql_direct("app", "select current_user")?, "gatehouse");
    // SCRAM is what the default cluster stores.
    let stored = pg.psql_direct(
        "postgres",
        "select left(rolpassword, 13) from pg_authid where rolname = 'gatehouse'",
    )?;
    assert_eq!(stored, "SCRAM-SHA-256");
    let err = pg
        .psql_direct("app", "select * from missing_table")
        .unwrap_err();
    assert!(format!("{err:#}").contains("missing_table"), "{err:#}");
    assert!(
        pg.socket_dir()
            .join(format!(".s.PGSQL.{}", pg.port()))
            .exists()
    );
    Ok(())
}

#[test]
fn cluster_with_tls_and_md5() -> Result<()> {
    let pg = PgCluster::start_with(PgOptions::default().ssl(true).host_auth(HostAuth::Md5))?;
    let stored = pg.psql_direct(
        "postgres",
        "select left(rolpassword, 3) from pg_authid where rolname = 'gatehouse'",
    )?;
    assert_eq!(stored, "md5");
    let mut target = pg.target("app");
    assert_eq!(target.sslmode, SslMode::Require);
    let out = target.psql("select ssl from pg_stat_ssl where pid = pg_backend_pid()")?;
    assert_eq!(out.success_text()?, "t");

    target.sslmode = SslMode::VerifyFull;
    target.sslrootcert = pg.server_cert_path();
    target.host = "localhost".into();
    assert_eq!(target.psql("select 1")?.success_text()?, "1");

    target.password = "wrong".into();
    let out = target.psql("select 1")?;
    assert!(!out.status.success());
    assert!(
        out.stderr_text().contains("password authentication failed"),
        "{}",
        out.stderr_text()
    );
    Ok(())
}

#[test]
fn cluster_stop_and_start_again() -> Result<()> {
    let mut pg = PgCluster::start_with(PgOptions::default().host_auth(HostAuth::Password))?;
    pg.psql_direct("app", "create table t (x int); insert into t values (42)")?;
    pg.stop()?;
    assert!(pg.psql_direct("app", "select 1").is_err());
    pg.start_again()?;
    assert_eq!(pg.psql_direct("app", "select x from t")?, "42");
    Ok(())
}

#[test]
fn pgbench_runs_against_a_target() -> Result<()> {
    let pg = PgCluster::start()?;
    let target = pg.target("app");
    target.pgbench(&["-i", "-q", "-s", "1"])?.success_text()?;
    let out = target.pgbench(&["-c", "2", "-t", "20", "-n"])?;
    let text = out.success_text()?;
    assert!(
        text.contains("number of transactions actually processed: 40/40"),
        "{text}"
    );
    assert!(target.conninfo().contains(&format!("port={}", pg.port())));
    assert!(!target.conninfo().contains(pg.password()));
    Ok(())
}

#[test]
fn issuer_serves_discovery_and_jwks() -> Result<()> {
    let issuer = Issuer::start()?;
    assert!(issuer.url().starts_with("http://127.0.0.1:"));

    let (status, body) = http_get(issuer.port(), "/.well-known/openid-configuration")?;
    assert_eq!(status, 200);
    let discovery: Value = serde_json::from_str(&body)?;
    assert_eq!(discovery["issuer"], issuer.url());
    assert_eq!(discovery["jwks_uri"], format!("{}/jwks", issuer.url()));

    let jwks: Value = serde_json::from_str(&http_get(issuer.port(), "/jwks")?.1)?;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, ["rsa-1", "ec-1"]);
    let rsa = &jwks["keys"][0];
    assert_eq!(
        (
            rsa["kty"].as_str(),
            rsa["alg"].as_str(),
            rsa["use"].as_str()
        ),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert_eq!(rsa["e"], "AQAB");
    // 2048-bit modulus: 256 bytes, 342 base64url characters.
    assert_eq!(rsa["n"].as_str().map(str::len), Some(342));
    let ec = &jwks["keys"][1];
    assert_eq!(
        (ec["kty"].as_str(), ec["crv"].as_str(), ec["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );

    assert_eq!(http_get(issuer.port(), "/nope")?.0, 404);
    assert_eq!(issuer.jwks_fetches(), 1);
    assert_eq!(issuer.discovery_fetches(), 1);

    issuer.set_failing(true);
    assert_eq!(http_get(issuer.port(), "/jwks")?.0, 503);
    issuer.set_failing(false);
    assert_eq!(issuer.jwks_fetches(), 2);
    Ok(())
}

/// `curl` over HTTPS against the issuer: with its CA, without it, and
/// with the misbehaviours tests switch on.
fn curl(ca: Option<&Path>, url: &str) -> Result<std::process::Output> {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-D", "-"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.arg(url);
    gatehouse_tests::process::run(&mut cmd, std::time::Duration::from_secs(20))
}

#[test]
fn https_issuer_serves_under_its_path_to_clients_that_trust_its_ca() -> Result<()> {
    let issuer = Issuer::start_https("/realms/acme")?;
    assert!(
        issuer.url().starts_with("https://127.0.0.1:") && issuer.url().ends_with("/realms/acme"),
        "{}",
        issuer.url()
    );
    let ca = issuer.ca_cert().context("an HTTPS issuer has a CA")?;
    let discovery_url = format!("{}/.well-known/openid-configuration", issuer.url());
    let out = curl(Some(&ca), &discovery_url)?;
    let text = out.stdout_text();
    assert!(out.status.success(), "{text}{}", out.stderr_text());
    let body = text.split_once("\r\n\r\n").context("headers")?.1;
    let doc: Value = serde_json::from_str(body)?;
    assert_eq!(doc["issuer"], issuer.url());
    assert_eq!(doc["jwks_uri"], format!("{}/jwks", issuer.url()));

    // Without the CA a stock client refuses the certificate.
    let out = curl(None, &discovery_url)?;
    assert!(!out.status.success(), "{}", out.stdout_text());
    // Paths outside the issuer's are not served.
    let out = curl(
        Some(&ca),
        &format!("https://127.0.0.1:{}/jwks", issuer.port()),
    )?;
    assert!(
        out.stdout_text().starts_with("HTTP/1.1 404"),
        "{}",
        out.stdout_text()
    );

    issuer.set_discovery_issuer(Some("https://impostor.example"));
    let out = curl(Some(&ca), &discovery_url)?;
    assert!(
        out.stdout_text()
            .contains("\"issuer\":\"https://impostor.example\"")
    );
    issuer.set_discovery_issuer(None);
    issuer.set_discovery_redirect(Some("https://elsewhere.example/x"));
    let out = curl(Some(&ca), &discovery_url)?;
    let head = out.stdout_text();
    assert!(head.starts_with("HTTP/1.1 302"), "{head}");
    assert!(
        head.contains("Location: https://elsewhere.example/x"),
        "{head}"
    );
    Ok(())
}

#[test]
fn minted_tokens_verify_against_served_jwks() -> Result<()> {
    let issuer = Issuer::start()?;
    let claims = Claims::new("alice").groups(["ci-deploy", "dev"]);

    let rs = issuer.mint(&claims)?;
    assert_eq!(decode_header(&rs)?.alg, Algorithm::RS256);
    assert_eq!(decode_header(&rs)?.kid.as_deref(), Some("rsa-1"));
    let payload = verify(&issuer, &rs)?;
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["groups"], serde_json::json!(["ci-deploy", "dev"]));
    assert_eq!(payload["aud"], "gatehouse");
    assert_eq!(payload["iss"], issuer.url());

    let es = issuer.mint(&claims.clone().es256())?;
    assert_eq!(decode_header(&es)?.alg, Algorithm::ES256);
    assert_eq!(decode_header(&es)?.kid.as_deref(), Some("ec-1"));
    assert_eq!(verify(&issuer, &es)?["sub"], "alice");
    Ok(())
}

#[test]
fn bad_tokens_fail_verification() -> Result<()> {
    let issuer = Issuer::start()?;
    let claims = Claims::new("mallory").groups(["ci-deploy"]);

    let none = issuer.token_alg_none(&claims)?;
    assert!(none.ends_with('.'));
    assert!(verify(&issuer, &none).is_err());

    let hs = issuer.token_hs256_with_public_key(&claims)?;
    assert_eq!(decode_header(&hs)?.alg, Algorithm::HS256);
    assert!(verify(&issuer, &hs).is_err());
    // It is a genuine HMAC over the public PEM — the attack, not garbage.
    let secret = DecodingKey::from_secret(&issuer.minter().keys().get(SigningKey::Rsa1).public_pem);
    let mut hs_validation = Validation::new(Algorithm::HS256);
    hs_validation.set_audience(&["gatehouse"]);
    decode::<Value>(&hs, &secret, &hs_validation)?;

    assert!(verify(&issuer, &issuer.token_bad_signature(&claims)?).is_err());
    assert!(
        verify(
            &issuer,
            &issuer.token_bad_signature(&claims.clone().es256())?
        )
        .is_err()
    );
    assert!(verify(&issuer, &issuer.token_wrong_key(&claims)?).is_err());

    let rogue = issuer.mint(&claims.clone().key(SigningKey::Rogue))?;
    assert_eq!(decode_header(&rogue)?.kid.as_deref(), Some("rogue-1"));
    assert!(verify(&issuer, &rogue).is_err());

    let expired = issuer.mint(&claims.clone().exp_in(-3600))?;
    assert!(verify(&issuer, &expired).is_err());
    let wrong_aud = issuer.mint(&claims.clone().aud("someone-else"))?;
    assert!(verify(&issuer, &wrong_aud).is_err());
    let no_exp = issuer.mint(&claims.clone().without("exp"))?;
    assert!(verify(&issuer, &no_exp).is_err());
    let no_kid = issuer.mint(&claims.clone().no_kid())?;
    assert_eq!(decode_header(&no_kid)?.kid, None);

    assert!(
        issuer
            .mint(&claims.clone().key(SigningKey::Ec1).alg(Algorithm::RS256))
            .is_err()
    );
    assert!(issuer.mint(&claims.alg(Algorithm::PS256)).is_err());
    Ok(())
}

#[test]
fn rsa2_is_published_on_demand() -> Result<()> {
    let issuer = Issuer::start()?;
    let token = issuer.mint(&Claims::new("bob").key(SigningKey::Rsa2))?;
    assert_eq!(decode_header(&token)?.kid.as_deref(), Some("rsa-2"));
    assert!(verify(&issuer, &token).is_err());

    issuer.publish_rsa2();
    assert_eq!(verify(&issuer, &token)?["sub"], "bob");

    issuer.rotate();
    assert_eq!(issuer.published_keys(), [SigningKey::Ec1, SigningKey::Rsa2]);
    assert!(verify(&issuer, &issuer.mint(&Claims::new("bob"))?).is_err());
    Ok(())
}

#[test]
fn issuer_keys_persist_in_a_directory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = Issuer::start_with_dir(dir.path())?;
    let jwks = first.jwks();
    drop(first);
    for kid in ["rsa-1", "ec-1", "rsa-2", "rogue-1"] {
        assert!(dir.path().join(format!("{kid}.pem")).exists());
    }
    let second = Issuer::start_with_dir(dir.path())?;
    assert_eq!(second.jwks(), jwks);
    Ok(())
}

#[test]
fn config_renders_the_contract() -> Result<()> {
    let work = tempfile::tempdir()?;
    let dead = ConnectionSpec::dead("dead-db")?;
    let config = ConfigBuilder::new("http://127.0.0.1:9999")
        .connection(ConnectionSpec::postgres(
            "app-db",
            "127.0.0.1:5999",
            "app",
            "gatehouse",
            "s3cret",
        ))
        .connection(dead.clone())
        .role(RoleSpec::new("deployers", &["ci-deploy"], &["app-db"]))
        .role(
            RoleSpec::new("everyone", &["dev", "ops"], &["app-db", "dead-db"]).line("note = \"x\""),
        )
        .policy(
            PolicySpec::new("strict")
                .recording("batched")
                .line("deny = [\"drop\"]"),
        )
        .postgres_plaintext(true)
        .max_sessions(5)
        .startup_timeout("2s")
        .line_in("listen", "ssh = \"127.0.0.1:2222\"")
        .line_in("audit", "enabled = true")
        .raw("[extra]\nanswer = 42");
    let path = config.write(work.path(), 6543)?;
    let text = std::fs::read_to_string(&path)?;
    let doc: toml::Table = toml::from_str(&text).with_context(|| text.clone())?;

    let data_dir = work.path().join("data");
    assert_eq!(doc["appliance"]["name"].as_str(), Some("test"));
    assert_eq!(doc["appliance"]["data_dir"].as_str(), data_dir.to_str());
    assert_eq!(doc["listen"]["postgres"].as_str(), Some("127.0.0.1:6543"));
    assert_eq!(doc["listen"]["postgres_plaintext"].as_bool(), Some(true));
    assert_eq!(doc["listen"]["ssh"].as_str(), Some("127.0.0.1:2222"));
    assert_eq!(doc["limits"]["max_sessions"].as_integer(), Some(5));
    assert_eq!(doc["limits"]["startup_timeout"].as_str(), Some("2s"));
    assert!(doc["limits"].get("max_message_bytes").is_none());
    let oidc = &doc["auth"]["oidc"];
    assert_eq!(oidc["issuer"].as_str(), Some("http://127.0.0.1:9999"));
    assert_eq!(oidc["audience"].as_str(), Some("gatehouse"));
    assert_eq!(oidc["groups_claim"].as_str(), Some("groups"));
    assert_eq!(oidc["algorithms"].as_array().map(Vec::len), Some(2));
    let roles = doc["roles"].as_array().context("roles")?;
    assert_eq!(roles.len(), 2);
    assert_eq!(roles[1]["connections"].as_array().map(Vec::len), Some(2));
    let conns = doc["connections"].as_array().context("connections")?;
    assert_eq!(
        conns[0]["password_file"].as_str(),
        Some("secrets/app-db.password")
    );
    assert_eq!(conns[0]["tls"].as_str(), Some("disable"));
    assert_eq!(conns[0]["policy"].as_str(), Some("default"));
    assert_eq!(conns[1]["address"].as_str(), Some(dead.address.as_str()));
    assert_eq!(
        doc["policies"]["default"]["recording"].as_str(),
        Some("batched")
    );
    assert_eq!(
        doc["policies"]["strict"]["deny"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(doc["audit"]["enabled"].as_bool(), Some(true));
    assert_eq!(doc["extra"]["answer"].as_integer(), Some(42));

    assert_eq!(
        std::fs::read_to_string(work.path().join("secrets/app-db.password"))?,
        "s3cret"
    );
    assert_file_mode(&work.path().join("secrets/app-db.password"), 0o600)?;

    // Several issuers: every one an [[auth.oidc]] entry with a name.
    let multi = ConfigBuilder::new("http://127.0.0.1:1")
        .issuer(
            gatehouse_tests::IssuerSpec::new("github", "https://gh.example")
                .line("jwks_file = \"jwks.json\""),
        )
        .render(work.path(), 1);
    let doc: toml::Table = toml::from_str(&multi)?;
    let issuers = doc["auth"]["oidc"].as_array().context("a list")?;
    assert_eq!(issuers.len(), 2);
    assert_eq!(issuers[0]["name"].as_str(), Some("oidc"));
    assert_eq!(issuers[1]["name"].as_str(), Some("github"));
    assert_eq!(issuers[1]["jwks_file"].as_str(), Some("jwks.json"));

    // Without limits set, the table is left out entirely.
    let plain = ConfigBuilder::new("http://127.0.0.1:1").render(work.path(), 1);
    let doc: toml::Table = toml::from_str(&plain)?;
    assert!(doc.get("limits").is_none());
    assert!(doc["listen"].get("postgres_plaintext").is_none());
    Ok(())
}

#[test]
fn dev_issuer_mints_tokens_the_served_keys_verify() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::start_with_dir(dir.path())?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-dev-issuer"))
        .args(["mint", "--dir"])
        .arg(dir.path())
        .args([
            "--issuer",
            issuer.url(),
            "--sub",
            "carol",
            "--groups",
            "ci-deploy,ops",
            "--ttl",
            "600",
        ])
        .output()?;
    let token = out.success_text()?;
    let claims = verify(&issuer, &token)?;
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["groups"], serde_json::json!(["ci-deploy", "ops"]));

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-dev-issuer"))
        .arg("mint")
        .output()?;
    assert!(!bad.status.success());
    assert!(bad.stderr_text().contains("--dir is required"));
    Ok(())
}

fn assert_file_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let actual = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if actual != mode {
        bail!("{} has mode {actual:o}, want {mode:o}", path.display());
    }
    Ok(())
}

/// A stand-in for the gatehouse binary: `serve` listens on the configured
/// port until SIGTERM, `echo-config` prints its `--config` argument.
const FAKE_DAEMON: &str = r#"#!/bin/sh
cmd="$1"; shift
config=""
while [ $# -gt 0 ]; do
  case "$1" in --config) config="$2"; shift 2 ;; *) shift ;; esac
done
case "$cmd" in
  serve)
    port=$(sed -n 's/^postgres = "127.0.0.1:\([0-9]*\)"$/\1/p' "$config")
    echo "fake gatehouse on $port"
    exec python3 -c '
import signal, socket, sys
signal.signal(signal.SIGTERM, lambda *a: (print("draining", flush=True), sys.exit(0)))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
while True: s.accept()[0].close()
' "$port" ;;
  echo-config) echo "$config" ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
"#;

#[test]
fn gatehouse_wrapper_drives_a_daemon() -> Result<()> {
    use gatehouse_tests::Gatehouse;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    let bin_dir = tempfile::tempdir()?;
    let fake = bin_dir.path().join("gatehouse");
    std::fs::write(&fake, FAKE_DAEMON)?;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    let failing = bin_dir.path().join("gatehouse-broken");
    std::fs::write(
        &failing,
        "#!/bin/sh\necho 'config error: no [appliance] table' >&2\nexit 3\n",
    )?;
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755))?;

    let config = ConfigBuilder::new("http://127.0.0.1:1");
    let mut gh = Gatehouse::stage_with_bin(&config, &fake)?;
    let cli = gh.run_cli(&["echo-config"])?;
    assert_eq!(cli.success_text()?, gh.config_path().to_string_lossy());
    gh.serve()?;
    assert!(gh.is_running());
    assert!(
        gh.log()
            .contains(&format!("fake gatehouse on {}", gh.pg_port()))
    );
    let target = gh.target("app-db", "alice", "token");
    assert_eq!(target.sslmode, SslMode::VerifyFull);
    assert_eq!(target.sslrootcert, Some(gh.data_dir().join("tls/ca.crt")));

    gh.signal("SIGTERM")?;
    let status = gh
        .wait_exit(Duration::from_secs(10))?
        .context("daemon did not exit on SIGTERM")?;
    assert!(status.success(), "{status}");
    assert!(gh.log().contains("draining"));
    // A second start appends to the same log. (The fake sets SO_REUSEADDR,
    // as the real daemon's listener does: the readiness probe's closed
    // connection leaves the port in TIME_WAIT.)
    gh.serve()?;
    assert_eq!(gh.log().matches("fake gatehouse on").count(), 2);

    let mut broken = Gatehouse::stage_with_bin(&config.postgres_plaintext(true), &failing)?;
    assert_eq!(broken.target("db", "u", "p").sslmode, SslMode::Disable);
    let err = broken.serve().unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("exited during startup") && msg.contains("no [appliance] table"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn dev_issuer_serve_prints_its_url() -> Result<()> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-dev-issuer"))
        .args(["serve", "--dir"])
        .arg(dir.path())
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let result = (|| -> Result<()> {
        let stdout = child.stdout.take().context("stdout")?;
        let mut url = String::new();
        std::io::BufReader::new(stdout).read_line(&mut url)?;
        let port: u16 = url
            .trim()
            .strip_prefix("http://127.0.0.1:")
            .context("url")?
            .parse()?;
        let (status, body) = http_get(port, "/.well-known/openid-configuration")?;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body)?["issuer"], url.trim());
        Ok(())
    })();
    child.kill()?;
    child.wait()?;
    result
}
