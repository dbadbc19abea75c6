//! Tokens shaped like the ones real agents carry, claim for claim as the
//! providers document them, minted by harness issuers with real keys.
//!
//! - GitHub Actions: "About security hardening with OpenID Connect",
//!   example token (no groups; who the job is lives in `repository`,
//!   `ref`, `environment`, `job_workflow_ref`).
//! - GitLab CI `id_tokens`: "OpenID Connect (OIDC) Authentication Using ID
//!   Tokens", token payload (strings for ids and booleans such as
//!   `ref_protected`, a number for `runner_id`).
//! - Kubernetes projected service-account tokens: "Configure Service
//!   Accounts for Pods", service account token volume projection (`sub` =
//!   `system:serviceaccount:NS:NAME`, a `kubernetes.io` object, `aud` a
//!   list).
//! - Keycloak: an access token for a client's service account (realm roles
//!   in `realm_access.roles`, `aud` a list, `azp` the client).
//!
//! Registered time claims (`iat`, `exp`) come from the [`crate::Minter`];
//! `nbf` is set where the provider sets it. The values are the
//! documentation's examples with the names of the test's own world.

use serde_json::json;

use crate::token::{Claims, now};

/// A GitHub Actions job of `repository` on `git_ref` deploying to
/// `environment`, asking for audience `audience` (the owner's URL by
/// default in `actions/core`'s `getIDToken`).
pub fn github_actions(
    repository: &str,
    git_ref: &str,
    environment: &str,
    audience: &str,
) -> Claims {
    let owner = repository.split('/').next().unwrap_or(repository);
    Claims::new(format!("repo:{repository}:environment:{environment}"))
        .aud(audience)
        .nbf(now() - 5)
        .claim("jti", json!("7a3a5a43-3f0f-4f2d-9d0b-8f1e0b7f6c11"))
        .claim("environment", json!(environment))
        .claim("ref", json!(git_ref))
        .claim("sha", json!("d6cd1e2bd19e03a81132a23b2025920577f84e37"))
        .claim("repository", json!(repository))
        .claim("repository_owner", json!(owner))
        .claim("actor_id", json!("12"))
        .claim("repository_visibility", json!("private"))
        .claim("repository_id", json!("74"))
        .claim("repository_owner_id", json!("65"))
        .claim("run_id", json!("6371204785"))
        .claim("run_number", json!("10"))
        .claim("run_attempt", json!("2"))
        .claim("runner_environment", json!("github-hosted"))
        .claim("actor", json!("octocat"))
        .claim("workflow", json!("deploy"))
        .claim("head_ref", json!(""))
        .claim("base_ref", json!(""))
        .claim("event_name", json!("workflow_dispatch"))
        .claim("ref_type", json!("branch"))
        .claim(
            "job_workflow_ref",
            json!(format!(
                "{repository}/.github/workflows/deploy.yml@{git_ref}"
            )),
        )
}

/// A GitLab CI job of `project_path` on branch `branch` (`protected` as
/// GitLab writes it: the string "true" or "false").
pub fn gitlab_ci(project_path: &str, branch: &str, protected: bool, audience: &str) -> Claims {
    let namespace = project_path.rsplit_once('/').map_or("", |(n, _)| n);
    Claims::new(format!(
        "project_path:{project_path}:ref_type:branch:ref:{branch}"
    ))
    .aud(audience)
    .nbf(now() - 5)
    .claim("namespace_id", json!("72"))
    .claim("namespace_path", json!(namespace))
    .claim("project_id", json!("20"))
    .claim("project_path", json!(project_path))
    .claim("user_id", json!("1"))
    .claim("user_login", json!("release-bot"))
    .claim("user_email", json!("release-bot@example.com"))
    .claim(
        "user_identities",
        json!([{ "provider": "github", "extern_uid": "2435223452345" }]),
    )
    .claim("pipeline_id", json!("574"))
    .claim("pipeline_source", json!("push"))
    .claim("job_id", json!("302"))
    .claim("ref", json!(branch))
    .claim("ref_type", json!("branch"))
    .claim("ref_path", json!(format!("refs/heads/{branch}")))
    .claim("ref_protected", json!(protected.to_string()))
    .claim("groups_direct", json!([namespace]))
    .claim("environment", json!("production"))
    .claim("environment_protected", json!(protected.to_string()))
    .claim("deployment_tier", json!("production"))
    .claim("environment_action", json!("start"))
    .claim("runner_id", json!(1))
    .claim("runner_environment", json!("self-hosted"))
    .claim("sha", json!("714a629c0b401fdce83e847fc9589983fc6f46bc"))
    .claim("project_visibility", json!("private"))
    .claim(
        "ci_config_ref_uri",
        json!(format!(
            "gitlab.example.com/{project_path}//.gitlab-ci.yml@refs/heads/{branch}"
        )),
    )
    .claim(
        "ci_config_sha",
        json!("714a629c0b401fdce83e847fc9589983fc6f46bc"),
    )
    .claim("jti", json!("235b3a54-b797-45c7-ae9a-f72d7bc6ef5b"))
}

/// A projected service-account token of `namespace`/`account` in pod
/// `pod`, for audience `audience` (the volume's `audience:`).
pub fn kubernetes_service_account(
    namespace: &str,
    account: &str,
    pod: &str,
    audience: &str,
) -> Claims {
    Claims::new(format!("system:serviceaccount:{namespace}:{account}"))
        .auds(&[audience])
        .nbf(now() - 5)
        .claim("jti", json!("cc1c6b4b-fc5c-4d5a-9ad3-2f6a1f8f2b5e"))
        .claim(
            "kubernetes.io",
            json!({
                "namespace": namespace,
                "node": { "name": "worker-1", "uid": "646e7c5e-32d6-4d42-9dbd-e504e6cbe6b1" },
                "pod": { "name": pod, "uid": "5e0bd49b-f040-43b0-99b7-22765a53f7f3" },
                "serviceaccount": { "name": account, "uid": "14ee3fa4-a7e2-420f-9f9a-dbc4507c3798" },
                "warnafter": now() + 3000,
            }),
        )
}

/// A Keycloak access token for the service account of client `client`
/// with realm roles `roles`, audience mapped to `audience`.
pub fn keycloak_service_account(client: &str, roles: &[&str], audience: &str) -> Claims {
    Claims::new("b4f58a8e-7c55-4c3e-9f6e-2d5c1f0a9e41")
        .auds(&[audience, "account"])
        .claim("jti", json!("onrtcc:0c8d3a6e-1b7f-4a41-8f43-4b8f5d3e2a10"))
        .claim("typ", json!("Bearer"))
        .claim("azp", json!(client))
        .claim("acr", json!("1"))
        .claim("allowed-origins", json!(["/*"]))
        .claim("realm_access", json!({ "roles": roles }))
        .claim(
            "resource_access",
            json!({ "account": { "roles": ["manage-account", "view-profile"] } }),
        )
        .claim("scope", json!("profile email"))
        .claim("clientHost", json!("10.0.0.9"))
        .claim("email_verified", json!(false))
        .claim(
            "preferred_username",
            json!(format!("service-account-{client}")),
        )
        .claim("clientAddress", json!("10.0.0.9"))
        .claim("client_id", json!(client))
}
