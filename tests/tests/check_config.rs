//! `gatehouse check-config`: each mistake an admin makes is named with the
//! file, the line and what to do, and the exit status is non-zero.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use gatehouse_tests::gatehouse::gatehouse_bin;

const GOOD: &str = r#"[appliance]
name = "t"
data_dir = "data"

[listen]
postgres = "127.0.0.1:6543"

[auth.oidc]
issuer = "http://127.0.0.1:9999"
audience = "gatehouse"

[[roles]]
name = "deployers"
groups = ["ci-deploy"]
connections = ["orders-db"]

[[connections]]
name = "orders-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "orders"
user = "gatehouse"
password_file = "secret.txt"
tls = "disable"
policy = "prod-db"

[policies.prod-db]
recording = "batched"
"#;

/// Write `config` next to a secret file (and a key set, `jwks.json`) and
/// run check-config on it; the `--config` flag goes after the subcommand to
/// show it is accepted in any position.
fn check(config: &str) -> Result<(i32, String, String)> {
    check_with_jwks(config, JWKS)
}

fn line_of(config: &str, needle: &str) -> usize {
    config
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .expect("needle in config")
}

#[test]
fn a_good_config_passes() -> Result<()> {
    let (code, stdout, stderr) = check(GOOD)?;
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    Ok(())
}

/// The client's `dbname` is the connection's name; `current_database()`
/// is the target's. Tools compare the two, so a difference is pointed out.
#[test]
fn a_connection_named_unlike_its_database_is_pointed_out() -> Result<()> {
    let (code, _, stderr) = check(GOOD)?;
    assert_eq!(code, 0, "a warning, not an error: {stderr}");
    let line = line_of(GOOD, r#"name = "orders-db""#);
    assert!(
        stderr.contains(&format!(
            ":{line}: connection \"orders-db\" leads to database \"orders\""
        )),
        "{stderr}"
    );
    assert!(stderr.contains("current_database()"), "{stderr}");

    let same = GOOD
        .replace(r#"name = "orders-db""#, r#"name = "orders""#)
        .replace(
            r#"connections = ["orders-db"]"#,
            r#"connections = ["orders"]"#,
        );
    let (code, _, stderr) = check(&same)?;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("leads to database"), "{stderr}");
    Ok(())
}

#[test]
fn startup_options_must_name_settings() -> Result<()> {
    let config = GOOD.replace(
        r#"policy = "prod-db""#,
        "policy = \"prod-db\"\nstartup_options = [\"work_mem\", \"-c x=1\"]",
    );
    let (code, _, stderr) = check(&config)?;
    assert_eq!(code, 2, "{stderr}");
    let line = line_of(&config, "startup_options");
    assert!(
        stderr.contains(&format!(
            ":{line}: startup_options: \"-c x=1\" is not a setting name"
        )),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn an_unknown_key_names_its_line_and_the_expected_keys() -> Result<()> {
    let bad = GOOD.replace(
        "audience = \"gatehouse\"",
        "audience = \"gatehouse\"\naudiance = \"typo\"",
    );
    let (code, _, stderr) = check(&bad)?;
    assert_ne!(code, 0);
    let line = line_of(&bad, "audiance");
    assert!(
        stderr.contains(&format!("gatehouse.toml:{line}:")),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `audiance`"), "{stderr}");
    assert!(
        stderr.contains("audience"),
        "the hint lists the valid keys: {stderr}"
    );
    Ok(())
}

#[test]
fn semantic_mistakes_are_all_reported_with_lines() -> Result<()> {
    let bad =
        GOOD.replace(
            "password_file = \"secret.txt\"",
            "password_file = \"missing.txt\"",
        )
        .replace("policy = \"prod-db\"", "policy = \"prod-dbb\"")
        .replace(
            "connections = [\"orders-db\"]",
            "connections = [\"orders-db\", \"nope-db\"]",
        ) + r#"
[[connections]]
name = "orders-db"
kind = "postgres"
address = "127.0.0.1:5433"
database = "orders"
user = "gatehouse"
tls = "disable"
policy = "prod-db"
"#;
    let (code, _, stderr) = check(&bad)?;
    assert_ne!(code, 0);
    let expect = [
        (line_of(&bad, "missing.txt"), "missing.txt does not exist"),
        (
            line_of(&bad, "prod-dbb"),
            "policy \"prod-dbb\", which is not defined",
        ),
        (
            line_of(&bad, "nope-db"),
            "grants connection \"nope-db\", which is not defined",
        ),
    ];
    for (line, text) in expect {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("gatehouse.toml:{line}:")) && l.contains(text)),
            "expected line {line} to say {text:?}:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("connection \"orders-db\" is defined twice"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret"),
        "secrets never appear in messages"
    );
    Ok(())
}

#[test]
fn insecure_choices_are_refused() -> Result<()> {
    for (from, to, says) in [
        (
            "issuer = \"http://127.0.0.1:9999\"",
            "issuer = \"http://idp.example.com\"",
            "must be https://",
        ),
        (
            "audience = \"gatehouse\"",
            "audience = \"gatehouse\"\nalgorithms = [\"HS256\"]",
            "\"HS256\" is not allowed",
        ),
        (
            "postgres = \"127.0.0.1:6543\"",
            "postgres = \"0.0.0.0:6543\"\npostgres_plaintext = true",
            "only allowed on a loopback listener",
        ),
    ] {
        let (code, _, stderr) = check(&GOOD.replace(from, to))?;
        assert_ne!(code, 0, "{to} should be refused");
        assert!(stderr.contains(says), "{to}: {stderr}");
    }
    Ok(())
}

#[test]
fn policy_rules_and_masks_are_validated_with_their_lines() -> Result<()> {
    let good = GOOD.to_owned()
        + r#"
[[policies.prod-db.rules]]
name = "no-ddl"
action = "block"
statements = ["drop", "truncate"]
message = "migrations only"

[[policies.prod-db.rules]]
action = "approve"
statements = ["delete"]
tables = ["public.customers", "billing.*"]
timeout = "2m"

[[policies.prod-db.masks]]
columns = ["email", "customers.ssn"]
strategy = "partial"
keep = 4

[[policies.prod-db.masks]]
detectors = ["credit_card", "email"]
regex = ["ACME-[0-9]{6}"]
"#;
    let (code, _, stderr) = check(&good)?;
    assert_eq!(code, 0, "a valid policy is accepted: {stderr}");
    for (from, to, says) in [
        (
            "\"truncate\"]",
            "\"truncat\"]",
            "unknown statement kind \"truncat\"",
        ),
        (
            "action = \"block\"",
            "action = \"deny\"",
            "action \"deny\" is not",
        ),
        (
            "\"billing.*\"",
            "\"a.b.c\"",
            "is not `name` or `schema.name`",
        ),
        (
            "\"credit_card\", ",
            "\"credit_crad\", ",
            "unknown detector \"credit_crad\"",
        ),
        ("ACME-[0-9]{6}", "x*", "can match the empty string"),
        (
            "strategy = \"partial\"",
            "strategy = \"scramble\"",
            "strategy \"scramble\"",
        ),
        (
            "message = \"migrations only\"",
            "timeout = \"1m\"",
            "`timeout` only applies",
        ),
        (
            "timeout = \"2m\"",
            "timeout = \"2m\"\napprovers = [\"mallory\"]",
            "approver \"mallory\"",
        ),
        ("keep = 4", "keep = 4\ncolour = 1", "unknown field `colour`"),
    ] {
        let bad = good.replace(from, to);
        assert_ne!(bad, good, "{from} must occur in the config");
        let (code, _, stderr) = check(&bad)?;
        assert_ne!(code, 0, "{to} should be refused");
        assert!(stderr.contains(says), "{to}: {stderr}");
        assert!(
            stderr.contains(".toml:"),
            "names the file and line: {stderr}"
        );
    }
    let strict = GOOD.replace("recording = \"batched\"", "recording = \"strict\"");
    let (code, _, stderr) = check(&strict)?;
    assert_eq!(code, 0, "strict recording is supported: {stderr}");
    let bad_mode = GOOD.replace("recording = \"batched\"", "recording = \"sometimes\"");
    let (code, _, stderr) = check(&bad_mode)?;
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown variant `sometimes`"), "{stderr}");
    Ok(())
}

#[test]
fn an_unknown_message_type_limit_is_named() -> Result<()> {
    let bad = GOOD.to_owned() + "\n[limits.message_bytes]\nquery = 4096\nqeury = 10\n";
    let (code, _, stderr) = check(&bad)?;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("unknown message type \"qeury\""),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_missing_config_file_is_a_clear_error() -> Result<()> {
    let out = Command::new(gatehouse_bin()?)
        .args(["--config", "/nonexistent/gatehouse.toml", "check-config"])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/gatehouse.toml: cannot read config"),
        "{stderr}"
    );
    assert!(!Path::new("/nonexistent").exists());
    Ok(())
}

/// Two issuers (one from a key file), a role by claims: the shape of
/// `[[auth.oidc]]` and `[[roles]]` the README documents, in GOOD's place.
fn issuers_config() -> String {
    const ONE_ISSUER: &str = r#"[auth.oidc]
issuer = "http://127.0.0.1:9999"
audience = "gatehouse"

[[roles]]
name = "deployers"
groups = ["ci-deploy"]
connections = ["orders-db"]
"#;
    const TWO_ISSUERS: &str = r#"[[auth.oidc]]
name = "corp"
issuer = "http://127.0.0.1:9999/realms/acme"
audience = "gatehouse"
groups_claim = "realm_access.roles"

[[auth.oidc]]
name = "github"
issuer = "https://token.actions.githubusercontent.com"
audience = "https://github.com/acme"
algorithms = ["RS256"]
jwks_file = "jwks.json"

[[roles]]
name = "deploy-from-main"
issuer = "github"
claims = { repository = "acme/deploy", ref = "refs/heads/main", environment = ["prod*", "staging"], ref_protected = true }
connections = ["orders-db"]

[[roles]]
name = "readers"
groups = ["db-readers"]
connections = ["orders-db"]
"#;
    assert!(GOOD.contains(ONE_ISSUER));
    GOOD.replace(ONE_ISSUER, TWO_ISSUERS)
}

/// A JWKS with one RSA key, as a provider publishes it.
const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#;

/// [`check`] with `jwks` as the key set file.
fn check_with_jwks(config: &str, jwks: &str) -> Result<(i32, String, String)> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("secret.txt"), "s3cret-value\n")?;
    std::fs::write(dir.path().join("jwks.json"), jwks)?;
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(&path, config)?;
    let out = Command::new(gatehouse_bin()?)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn several_issuers_and_roles_by_claims_are_accepted() -> Result<()> {
    let (code, stdout, stderr) = check(&issuers_config())?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    // The single-table form still loads.
    let (code, _, stderr) = check(GOOD)?;
    assert_eq!(code, 0, "{stderr}");
    Ok(())
}

#[test]
fn issuer_and_role_mistakes_are_named_with_their_lines() -> Result<()> {
    for (from, to, says) in [
        (
            "name = \"corp\"\n",
            "",
            "needs a `name` when several issuers are configured",
        ),
        (
            "name = \"github\"",
            "name = \"corp\"",
            "auth.oidc name \"corp\" is used twice",
        ),
        (
            "name = \"github\"",
            "name = \"git:hub\"",
            "must be letters, digits",
        ),
        (
            "issuer = \"https://token.actions.githubusercontent.com\"",
            "issuer = \"http://127.0.0.1:9999/realms/acme/\"",
            "is configured twice",
        ),
        (
            "jwks_file = \"jwks.json\"",
            "jwks_file = \"nope.json\"",
            "jwks_file",
        ),
        (
            "jwks_file = \"jwks.json\"",
            "jwks_file = \"jwks.json\"\nca_file = \"secret.txt\"",
            "with jwks_file nothing is fetched",
        ),
        (
            "groups_claim = \"realm_access.roles\"",
            "ca_file = \"secret.txt\"",
            "ca_file",
        ),
        (
            "issuer = \"github\"",
            "issuer = \"gitlab\"",
            "names issuer \"gitlab\", which is not configured",
        ),
        (
            "groups = [\"db-readers\"]\n",
            "",
            "role \"readers\" has no criteria",
        ),
        (
            "ref_protected = true",
            "ref_protected = 1979-05-27",
            "claims.ref_protected must be a string",
        ),
        (
            "environment = [\"prod*\", \"staging\"]",
            "environment = []",
            "claims.environment must be",
        ),
        (
            "groups_claim =",
            "group_claim =",
            "unknown field `group_claim`",
        ),
    ] {
        let good = issuers_config();
        let bad = good.replacen(from, to, 1);
        assert_ne!(bad, good, "{from} must occur in the config");
        let (code, _, stderr) = check(&bad)?;
        assert_ne!(code, 0, "{to:?} should be refused");
        assert!(stderr.contains(says), "{to:?}: {stderr}");
        assert!(
            stderr.contains(".toml:"),
            "names the file and line: {stderr}"
        );
    }
    // A key file without a usable key is refused.
    let (code, _, stderr) = check_with_jwks(
        &issuers_config(),
        r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
    )?;
    assert_ne!(code, 0);
    assert!(stderr.contains("holds no usable signing key"), "{stderr}");
    let (code, _, stderr) = check_with_jwks(&issuers_config(), "not json")?;
    assert_ne!(code, 0);
    assert!(stderr.contains("is not a JWKS"), "{stderr}");
    Ok(())
}

#[test]
fn a_role_on_the_issuer_alone_is_warned_about() -> Result<()> {
    let config = issuers_config().replace(
        "claims = { repository = \"acme/deploy\", ref = \"refs/heads/main\", environment = [\"prod*\", \"staging\"], ref_protected = true }\n",
        "",
    );
    let (code, _, stderr) = check(&config)?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("matches on the issuer alone"), "{stderr}");
    Ok(())
}
