//! The agents Gatehouse is for, with the tokens they really carry: a
//! GitHub Actions job, a GitLab CI job, a Kubernetes service account and an
//! AI assistant on Keycloak, each from its own issuer (two over HTTPS on a
//! private CA, two from static key files), each given exactly the
//! connection its role grants by claims — through psql, in the recording,
//! in `recordings list --claim`, and in `check-config --explain-token`.

mod common;

use std::path::Path;

use anyhow::{Context, Result};
use common::{ended_session_of_user, list_sessions};
use gatehouse_tests::config::quote;
use gatehouse_tests::providers::{
    github_actions, gitlab_ci, keycloak_service_account, kubernetes_service_account,
};
use gatehouse_tests::{
    Claims, ConfigBuilder, ConnectionSpec, Gatehouse, Issuer, IssuerSpec, Minter, OutputExt,
    PgCluster, RoleSpec,
};
use serde_json::json;

const ORDERS: &str = "orders-db";
const REPORTS: &str = "reports-db";
/// Issuers known from key files: nothing listens at these URLs, and with
/// `jwks_file` the gateway never asks.
const GITHUB_ISS: &str = "https://127.0.0.1:9/github-actions";
const KUBERNETES_ISS: &str = "https://127.0.0.1:9/kubernetes";
const GITHUB_AUD: &str = "https://github.com/acme";
const GITLAB_AUD: &str = "https://gatehouse.acme.example";

/// Four issuers, two connections, four roles.
struct Agents {
    gh: Gatehouse,
    github: Minter,
    kubernetes: Minter,
    gitlab: Issuer,
    keycloak: Issuer,
    _keys: (Issuer, Issuer),
    files: tempfile::TempDir,
    _pg: PgCluster,
}

impl Agents {
    /// The world; `serve` starts the daemon (explain-token needs only the
    /// config and the issuers).
    fn start(serve: bool) -> Result<Self> {
        let pg = PgCluster::start()?;
        let keycloak = Issuer::start_https("/realms/acme")?;
        let gitlab = Issuer::start_https("")?;
        let (github_keys, kubernetes_keys) = (Issuer::start()?, Issuer::start()?);
        let files = tempfile::tempdir()?;
        let github_jwks = files.path().join("github-jwks.json");
        let kubernetes_jwks = files.path().join("kubernetes-jwks.json");
        github_keys.write_jwks(&github_jwks)?;
        kubernetes_keys.write_jwks(&kubernetes_jwks)?;
        let config = config(&keycloak, &gitlab, &github_jwks, &kubernetes_jwks, &pg)?;
        let gh = if serve {
            Gatehouse::start(&config)?
        } else {
            Gatehouse::stage(&config)?
        };
        Ok(Agents {
            gh,
            github: github_keys.minter().for_issuer(GITHUB_ISS),
            kubernetes: kubernetes_keys.minter().for_issuer(KUBERNETES_ISS),
            gitlab,
            keycloak,
            _keys: (github_keys, kubernetes_keys),
            files,
            _pg: pg,
        })
    }

    fn psql(&self, connection: &str, user: &str, token: &str) -> Result<std::process::Output> {
        self.gh
            .target(connection, user, token)
            .psql("select current_database() is not null")
    }

    /// `check-config --explain-token` on `token`: exit code and stdout.
    fn explain(&self, name: &str, token: &str) -> Result<(i32, String)> {
        let file = self.files.path().join(format!("{name}.jwt"));
        std::fs::write(&file, format!("{token}\n"))?;
        let out = self
            .gh
            .run_cli(&["check-config", "--explain-token", &file.to_string_lossy()])?;
        Ok((out.status.code().unwrap_or(-1), out.stdout_text()))
    }
}

fn config(
    keycloak: &Issuer,
    gitlab: &Issuer,
    github_jwks: &Path,
    kubernetes_jwks: &Path,
    pg: &PgCluster,
) -> Result<ConfigBuilder> {
    let file = |p: &Path| quote(&p.to_string_lossy());
    let keycloak_ca = keycloak.ca_cert().context("HTTPS issuer")?;
    let gitlab_ca = gitlab.ca_cert().context("HTTPS issuer")?;
    Ok(ConfigBuilder::new(keycloak.url())
        .issuer_name("keycloak")
        .groups_claim("realm_access.roles")
        .line_in("auth.oidc", &format!("ca_file = {}", file(&keycloak_ca)))
        .issuer(
            IssuerSpec::new("github", GITHUB_ISS)
                .audience(GITHUB_AUD)
                .line(&format!("jwks_file = {}", file(github_jwks))),
        )
        .issuer(
            IssuerSpec::new("gitlab", gitlab.url())
                .audience(GITLAB_AUD)
                .line(&format!("ca_file = {}", file(&gitlab_ca))),
        )
        .issuer(
            IssuerSpec::new("kubernetes", KUBERNETES_ISS)
                .line(&format!("jwks_file = {}", file(kubernetes_jwks))),
        )
        .connection(ConnectionSpec::for_cluster(ORDERS, pg))
        .connection(ConnectionSpec::for_cluster(REPORTS, pg))
        .role(
            RoleSpec::new("deploy-from-main", &[], &[ORDERS])
                .line("issuer = \"github\"")
                .line(
                    "claims = { repository = \"acme/deploy\", ref = \"refs/heads/main\", environment = \"prod*\" }",
                ),
        )
        .role(
            RoleSpec::new("gitlab-protected", &[], &[ORDERS])
                .line("issuer = \"gitlab\"")
                .line("claims = { project_path = \"acme/*\", ref_protected = true }"),
        )
        .role(
            // Unquoted dotted keys are nested tables in TOML; both spellings
            // name the same claim path.
            RoleSpec::new("k8s-reporting", &[], &[REPORTS])
                .line("issuer = \"kubernetes\"")
                .line(
                    "claims = { \"kubernetes.io.namespace\" = \"reporting\", kubernetes.io.serviceaccount.name = \"report-*\" }",
                ),
        )
        .role(RoleSpec::new("assistants", &["db-readers"], &[REPORTS]).line("issuer = \"keycloak\"")))
}

fn github_good() -> Claims {
    github_actions("acme/deploy", "refs/heads/main", "prod-eu", GITHUB_AUD)
}

fn gitlab_good() -> Claims {
    gitlab_ci("acme/billing", "main", true, GITLAB_AUD)
}

fn kubernetes_good() -> Claims {
    kubernetes_service_account(
        "reporting",
        "report-writer",
        "report-writer-7d9f",
        "gatehouse",
    )
}

fn keycloak_good() -> Claims {
    keycloak_service_account(
        "ai-assistant",
        &["offline_access", "db-readers"],
        "gatehouse",
    )
}

/// The refusal psql prints for a connection no role grants.
fn refused_for(stderr: &str, connection: &str) -> bool {
    stderr.contains(&format!(
        "connection \"{connection}\" does not exist or is not allowed for this identity"
    ))
}

#[test]
fn each_agent_gets_what_its_claims_grant_and_nothing_else() -> Result<()> {
    let w = Agents::start(true)?;
    let cases: [(&str, &str, &str, String, String); 4] = [
        (
            "github",
            ORDERS,
            REPORTS,
            w.github.mint(&github_good())?,
            "github:repo:acme/deploy:environment:prod-eu".into(),
        ),
        (
            "gitlab",
            ORDERS,
            REPORTS,
            w.gitlab.mint(&gitlab_good())?,
            "gitlab:project_path:acme/billing:ref_type:branch:ref:main".into(),
        ),
        (
            "kubernetes",
            REPORTS,
            ORDERS,
            w.kubernetes.mint(&kubernetes_good())?,
            "kubernetes:system:serviceaccount:reporting:report-writer".into(),
        ),
        (
            "keycloak",
            REPORTS,
            ORDERS,
            w.keycloak.mint(&keycloak_good())?,
            "keycloak:b4f58a8e-7c55-4c3e-9f6e-2d5c1f0a9e41".into(),
        ),
    ];
    for (agent, granted, other, token, identity) in &cases {
        let user = format!("{agent}-ok");
        let out = w.psql(granted, &user, token)?;
        assert_eq!(out.success_text()?, "t", "[{agent}] log:\n{}", w.gh.log());
        let h = ended_session_of_user(&w.gh, &user)?;
        assert_eq!(h["identity"], identity.as_str(), "[{agent}] {h:#}");
        assert_eq!(h["issuer"], *agent, "[{agent}] {h:#}");

        let user = format!("{agent}-other");
        let out = w.psql(other, &user, token)?;
        assert!(
            refused_for(&out.stderr_text(), other),
            "[{agent}] {}",
            out.stderr_text()
        );
    }

    // What granted each, as recorded: the roles and only the claims they
    // matched on.
    let h = ended_session_of_user(&w.gh, "github-ok")?;
    assert_eq!(h["roles"], json!(["deploy-from-main"]));
    assert_eq!(
        h["claims"],
        json!({ "environment": "prod-eu", "ref": "refs/heads/main", "repository": "acme/deploy" })
    );
    let h = ended_session_of_user(&w.gh, "gitlab-ok")?;
    assert_eq!(
        h["claims"],
        json!({ "project_path": "acme/billing", "ref_protected": "true" })
    );
    let h = ended_session_of_user(&w.gh, "kubernetes-ok")?;
    assert_eq!(
        h["claims"],
        json!({ "kubernetes.io.namespace": "reporting", "kubernetes.io.serviceaccount.name": "report-writer" })
    );
    let h = ended_session_of_user(&w.gh, "keycloak-ok")?;
    assert_eq!(h["roles"], json!(["assistants"]));
    assert_eq!(h["claims"], json!({}));
    assert_eq!(
        h["groups"],
        json!(["offline_access", "db-readers"]),
        "{h:#}"
    );

    // Near misses: same issuers, one claim off.
    let misses = [
        (
            "github-branch",
            ORDERS,
            w.github.mint(&github_actions(
                "acme/deploy",
                "refs/heads/feature",
                "prod-eu",
                GITHUB_AUD,
            ))?,
        ),
        (
            "github-fork",
            ORDERS,
            w.github.mint(&github_actions(
                "mallory/deploy",
                "refs/heads/main",
                "prod-eu",
                GITHUB_AUD,
            ))?,
        ),
        (
            "gitlab-unprotected",
            ORDERS,
            w.gitlab
                .mint(&gitlab_ci("acme/billing", "wip", false, GITLAB_AUD))?,
        ),
        (
            "k8s-namespace",
            REPORTS,
            w.kubernetes.mint(&kubernetes_service_account(
                "default",
                "report-writer",
                "x",
                "gatehouse",
            ))?,
        ),
        (
            "keycloak-role",
            REPORTS,
            w.keycloak.mint(&keycloak_service_account(
                "chatbot",
                &["offline_access"],
                "gatehouse",
            ))?,
        ),
    ];
    for (user, connection, token) in &misses {
        let out = w.psql(connection, user, token)?;
        assert!(
            refused_for(&out.stderr_text(), connection),
            "[{user}] {}",
            out.stderr_text()
        );
        let h = ended_session_of_user(&w.gh, user)?;
        assert_eq!(h["outcome"], "refused", "[{user}] {h:#}");
        assert_eq!(h["roles"], json!([]), "[{user}] {h:#}");
    }
    // A GitHub token minted for another audience (any repository in the
    // world can ask for any audience) is refused before roles.
    let token = w.github.mint(&github_actions(
        "acme/deploy",
        "refs/heads/main",
        "prod",
        "https://github.com/mallory",
    ))?;
    let out = w.psql(ORDERS, "github-aud", &token)?;
    assert!(
        out.stderr_text().contains("invalid token: wrong audience"),
        "{}",
        out.stderr_text()
    );

    // `recordings list --claim`: by what granted the session.
    let listed = |args: &[&str]| -> Result<Vec<String>> {
        let mut all = vec!["recordings", "list", "--json"];
        all.extend_from_slice(args);
        let out = w.gh.run_cli(&all)?;
        let text = out.success_text()?;
        text.lines()
            .map(|l| {
                let h: serde_json::Value = serde_json::from_str(l)?;
                Ok(h["client_user"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    };
    assert_eq!(
        listed(&["--claim", "repository=acme/deploy"])?,
        ["github-ok"]
    );
    assert_eq!(
        listed(&[
            "--claim",
            "project_path=acme/*",
            "--claim",
            "ref_protected=true"
        ])?,
        ["gitlab-ok"]
    );
    assert_eq!(
        listed(&["--claim", "kubernetes.io.namespace=report*"])?,
        ["kubernetes-ok"]
    );
    assert!(listed(&["--claim", "repository=mallory/*"])?.is_empty());
    let out =
        w.gh.run_cli(&["recordings", "list", "--claim", "no-equals-sign"])?;
    assert!(!out.status.success());
    assert!(
        out.stderr_text().contains("NAME=VALUE"),
        "{}",
        out.stderr_text()
    );
    assert!(list_sessions(&w.gh)?.len() >= 14);
    Ok(())
}

#[test]
fn explain_token_shows_each_agents_roles_and_why_not_the_others() -> Result<()> {
    let w = Agents::start(false)?;

    let (code, text) = w.explain("github", &w.github.mint(&github_good())?)?;
    assert_eq!(code, 0, "{text}");
    for line in [
        &format!("issuer:     github ({GITHUB_ISS})"),
        "verified:   yes",
        "identity:   github:repo:acme/deploy:environment:prod-eu",
        "groups:     none (from groups)",
        "  repository = \"acme/deploy\"",
        "  job_workflow_ref = \"acme/deploy/.github/workflows/deploy.yml@refs/heads/main\"",
        "  + deploy-from-main: issuer github; environment = \"prod-eu\" matches \"prod*\"; ref = \"refs/heads/main\" matches \"refs/heads/main\"; repository = \"acme/deploy\" matches \"acme/deploy\"",
        "  - gitlab-protected: issuer is \"github\", the role wants \"gitlab\"; claim project_path is absent; claim ref_protected is absent",
        "  - assistants: issuer is \"github\", the role wants \"keycloak\"; no group in [\"db-readers\"]",
        "connections: orders-db (via deploy-from-main)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    let (code, text) = w.explain(
        "gitlab",
        &w.gitlab
            .mint(&gitlab_ci("acme/billing", "wip", false, GITLAB_AUD))?,
    )?;
    assert_eq!(code, 0, "{text}");
    for line in [
        "identity:   gitlab:project_path:acme/billing:ref_type:branch:ref:wip",
        "  - gitlab-protected: claim ref_protected = \"false\" does not match [\"true\"]",
        "connections: none",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    let (code, text) = w.explain("kubernetes", &w.kubernetes.mint(&kubernetes_good())?)?;
    assert_eq!(code, 0, "{text}");
    for line in [
        "identity:   kubernetes:system:serviceaccount:reporting:report-writer",
        "  + k8s-reporting: issuer kubernetes; kubernetes.io.namespace = \"reporting\" matches \"reporting\"; kubernetes.io.serviceaccount.name = \"report-writer\" matches \"report-*\"",
        "connections: reports-db (via k8s-reporting)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    let (code, text) = w.explain("keycloak", &w.keycloak.mint(&keycloak_good())?)?;
    assert_eq!(code, 0, "{text}");
    for line in [
        &format!("issuer:     keycloak ({})", w.keycloak.url()),
        "groups:     offline_access, db-readers (from realm_access.roles)",
        "  + assistants: issuer keycloak; group db-readers",
        "connections: reports-db (via assistants)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    // An expired token is explained from its claims, marked, exit 1.
    let (code, text) = w.explain("expired", &w.github.mint(&github_good().exp_in(-3600))?)?;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("verified:   NO — invalid token: token expired"),
        "{text}"
    );
    assert!(
        text.contains("connections: orders-db (via deploy-from-main)"),
        "{text}"
    );
    // A token from an issuer that is not configured names what is.
    let stranger = Issuer::start()?;
    let (code, text) = w.explain("stranger", &stranger.mint(&Claims::new("eve"))?)?;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("issuer:     none — invalid token: wrong issuer"),
        "{text}"
    );
    assert!(text.contains(GITHUB_ISS), "{text}");
    Ok(())
}
