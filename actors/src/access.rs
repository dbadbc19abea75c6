//! Who may use which connection: roles that match an identity on its
//! issuer, its groups and its claims.
//!
//! CI systems and clusters put who an agent is in claims, not groups: a
//! GitHub Actions job in `repository`, `ref` and `environment`, a GitLab
//! job in `project_path` and `ref_protected`, a Kubernetes service account
//! in `sub` and `kubernetes.io.namespace`. A [`Role`] names the criteria
//! an identity must meet; every criterion given must hold:
//!
//! - `issuer`: the configured issuer's name;
//! - `groups`: any of the identity's groups is listed;
//! - `claims`: for each claim path, the token's value matches one of the
//!   patterns (`*` matches any run of characters). A claim holding a list
//!   matches if any entry does; booleans and numbers are compared as their
//!   JSON text (`true`, `42`). A path may be dotted to reach into nested
//!   objects (`realm_access.roles`, `kubernetes.io.namespace`).
//!
//! What granted a session is recorded: the roles and the values of the
//! claims they matched on ([`Grant`]), never the token.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::policy::glob;

/// One `[[roles]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    /// The configured issuer's name, when the role is for one issuer.
    pub issuer: Option<String>,
    /// Token groups that grant the role (any one suffices); empty: groups
    /// are not a criterion.
    pub groups: Vec<String>,
    /// Claims that must all match.
    pub claims: Vec<ClaimRule>,
    pub connections: Vec<String>,
}

/// One claim criterion: the value at `path` must match one of `patterns`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRule {
    pub path: String,
    pub patterns: Vec<String>,
}

/// Why a role did not match an identity. Its `Display` is what
/// `check-config --explain-token` prints.
#[derive(Debug, Clone, PartialEq)]
pub enum Miss {
    Issuer {
        wanted: String,
        got: String,
    },
    Groups {
        wanted: Vec<String>,
    },
    ClaimMissing {
        path: String,
    },
    /// The claim is an object or null: no pattern can match it.
    ClaimNotComparable {
        path: String,
    },
    ClaimMismatch {
        path: String,
        value: Value,
        patterns: Vec<String>,
    },
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Issuer { wanted, got } => {
                write!(f, "issuer is {got:?}, the role wants {wanted:?}")
            }
            Miss::Groups { wanted } => write!(f, "no group in {wanted:?}"),
            Miss::ClaimMissing { path } => write!(f, "claim {path} is absent"),
            Miss::ClaimNotComparable { path } => write!(
                f,
                "claim {path} is an object or null, not a string, number, boolean or list"
            ),
            Miss::ClaimMismatch {
                path,
                value,
                patterns,
            } => write!(f, "claim {path} = {value} does not match {patterns:?}"),
        }
    }
}

/// The claims a role matched on: path → the token's value (for a list,
/// the entries that matched).
pub type MatchedClaims = BTreeMap<String, Value>;

impl Role {
    /// Whether the role is granted to `identity`: the claims it matched on,
    /// or every reason it was not.
    pub fn check(&self, identity: &Identity) -> Result<MatchedClaims, Vec<Miss>> {
        let mut misses = Vec::new();
        if let Some(wanted) = &self.issuer
            && *wanted != identity.issuer
        {
            misses.push(Miss::Issuer {
                wanted: wanted.clone(),
                got: identity.issuer.clone(),
            });
        }
        if !self.groups.is_empty() && !self.groups.iter().any(|g| identity.groups.contains(g)) {
            misses.push(Miss::Groups {
                wanted: self.groups.clone(),
            });
        }
        let mut matched = MatchedClaims::new();
        for rule in &self.claims {
            match rule.check(&identity.claims) {
                Ok(value) => {
                    matched.insert(rule.path.clone(), value);
                }
                Err(miss) => misses.push(miss),
            }
        }
        if misses.is_empty() {
            Ok(matched)
        } else {
            Err(misses)
        }
    }

    /// Whether this role has any criterion at all (a role without one
    /// would grant its connections to every token: a config error).
    pub fn has_criteria(&self) -> bool {
        self.issuer.is_some() || !self.groups.is_empty() || !self.claims.is_empty()
    }
}

impl ClaimRule {
    /// The matching value (for a list, the matching entries), or why not.
    fn check(&self, claims: &Map<String, Value>) -> Result<Value, Miss> {
        let value = claim(claims, &self.path).ok_or_else(|| Miss::ClaimMissing {
            path: self.path.clone(),
        })?;
        let matches = |v: &Value| self.patterns.iter().any(|p| value_matches_scalar(v, p));
        let found = match value {
            Value::Array(items) => {
                let hits: Vec<Value> = items.iter().filter(|v| matches(v)).cloned().collect();
                (!hits.is_empty()).then_some(Value::Array(hits))
            }
            Value::Object(_) | Value::Null => {
                return Err(Miss::ClaimNotComparable {
                    path: self.path.clone(),
                });
            }
            scalar => matches(scalar).then(|| scalar.clone()),
        };
        found.ok_or_else(|| Miss::ClaimMismatch {
            path: self.path.clone(),
            value: value.clone(),
            patterns: self.patterns.clone(),
        })
    }
}

/// What granted a session its connection: the roles, and the claims they
/// matched on. Recorded in the session header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    pub roles: Vec<String>,
    pub claims: MatchedClaims,
}

/// The role table, replaceable while sessions run (a config reload): a
/// session decides against the table as it was when it asked.
#[derive(Debug, Default)]
pub struct Roles(RwLock<Arc<[Role]>>);

impl Roles {
    pub fn new(roles: Vec<Role>) -> Self {
        Roles(RwLock::new(roles.into()))
    }

    /// Swap in a new table; sessions already relaying keep their grant.
    pub fn replace(&self, roles: Vec<Role>) {
        // A poisoned lock still holds a whole table: writers only swap.
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = roles.into();
    }

    /// The table as it is now.
    pub fn current(&self) -> Arc<[Role]> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The roles that grant `connection` to `identity`, with the claims
    /// they matched on; `None` when no role does.
    pub fn grant(&self, identity: &Identity, connection: &str) -> Option<Grant> {
        let mut grant = Grant::default();
        for role in self.current().iter() {
            if !role.connections.iter().any(|c| c == connection) {
                continue;
            }
            if let Ok(claims) = role.check(identity) {
                grant.roles.push(role.name.clone());
                grant.claims.extend(claims);
            }
        }
        (!grant.roles.is_empty()).then_some(grant)
    }
}

/// The value at `path` in a token's claims. A claim whose name contains
/// dots (`kubernetes.io`) is found before a nested path is tried, and a
/// dotted path walks nested objects (`realm_access.roles`,
/// `kubernetes.io.namespace`): at each level the whole remaining path is
/// tried as a name first, then each split at a dot from the left.
pub fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    for (at, _) in path.match_indices('.') {
        if let Some(Value::Object(inner)) = claims.get(&path[..at])
            && let Some(v) = claim(inner, &path[at + 1..])
        {
            return Some(v);
        }
    }
    None
}

/// Whether a claim value (from a token, or as a header recorded it)
/// matches `pattern` (`*` globs): scalars by their text, lists by any
/// entry; objects and null never.
pub fn value_matches(value: &Value, pattern: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|v| value_matches_scalar(v, pattern)),
        v => value_matches_scalar(v, pattern),
    }
}

fn value_matches_scalar(value: &Value, pattern: &str) -> bool {
    scalar_text(value).is_some_and(|text| glob(pattern, &text))
}

/// A scalar claim as text: strings as they are, booleans and numbers as
/// their JSON text. Lists, objects and null have none.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(issuer: &str, groups: &[&str], claims: Value) -> Identity {
        let Value::Object(claims) = claims else {
            panic!("claims must be an object")
        };
        Identity {
            issuer: issuer.into(),
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("s")
                .into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            claims,
        }
    }

    fn rule(path: &str, patterns: &[&str]) -> ClaimRule {
        ClaimRule {
            path: path.into(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn role(name: &str, issuer: Option<&str>, groups: &[&str], claims: Vec<ClaimRule>) -> Role {
        Role {
            name: name.into(),
            issuer: issuer.map(str::to_owned),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            claims,
            connections: vec!["db".into()],
        }
    }

    fn github() -> Identity {
        identity(
            "github",
            &[],
            json!({
                "sub": "repo:acme/deploy:environment:prod",
                "repository": "acme/deploy",
                "ref": "refs/heads/main",
                "environment": "prod-eu",
                "run_number": "10",
                "runner_id": 7,
                "ref_protected": true,
                "realm_access": { "roles": ["offline_access", "db-readers"] },
                "kubernetes.io": { "namespace": "ci", "serviceaccount": { "name": "deployer" } },
            }),
        )
    }

    #[test]
    fn all_claims_must_hold_with_globs() {
        let r = role(
            "deploy",
            Some("github"),
            &[],
            vec![
                rule("repository", &["acme/deploy"]),
                rule("ref", &["refs/heads/main"]),
                rule("environment", &["prod*"]),
            ],
        );
        let matched = r.check(&github()).unwrap();
        assert_eq!(matched["environment"], json!("prod-eu"));
        assert_eq!(matched.len(), 3);

        let r = role(
            "deploy",
            Some("github"),
            &[],
            vec![
                rule("repository", &["acme/deploy"]),
                rule("ref", &["refs/heads/release-*"]),
            ],
        );
        assert_eq!(
            r.check(&github()),
            Err(vec![Miss::ClaimMismatch {
                path: "ref".into(),
                value: json!("refs/heads/main"),
                patterns: vec!["refs/heads/release-*".into()],
            }])
        );
    }

    #[test]
    fn issuer_is_compared_by_name() {
        let r = role("gl", Some("gitlab"), &[], vec![rule("ref", &["*"])]);
        assert_eq!(
            r.check(&github()),
            Err(vec![Miss::Issuer {
                wanted: "gitlab".into(),
                got: "github".into()
            }])
        );
    }

    #[test]
    fn lists_match_on_any_entry_and_record_the_matching_ones() {
        let r = role("kc", None, &[], vec![rule("realm_access.roles", &["db-*"])]);
        assert_eq!(
            r.check(&github()).unwrap()["realm_access.roles"],
            json!(["db-readers"])
        );
        let r = role(
            "kc",
            None,
            &[],
            vec![rule("realm_access.roles", &["admin"])],
        );
        assert!(r.check(&github()).is_err());
    }

    #[test]
    fn booleans_and_numbers_compare_as_json_text() {
        let r = role(
            "n",
            None,
            &[],
            vec![rule("runner_id", &["7"]), rule("ref_protected", &["true"])],
        );
        assert!(r.check(&github()).is_ok());
        // The string "10" and the number 10 read the same.
        let r = role("n", None, &[], vec![rule("run_number", &["10"])]);
        assert!(r.check(&github()).is_ok());
        let r = role("n", None, &[], vec![rule("ref_protected", &["false"])]);
        assert!(r.check(&github()).is_err());
    }

    #[test]
    fn objects_and_absent_claims_never_match() {
        let r = role("o", None, &[], vec![rule("realm_access", &["*"])]);
        assert_eq!(
            r.check(&github()),
            Err(vec![Miss::ClaimNotComparable {
                path: "realm_access".into()
            }])
        );
        let r = role("o", None, &[], vec![rule("nope", &["*"])]);
        assert_eq!(
            r.check(&github()),
            Err(vec![Miss::ClaimMissing {
                path: "nope".into()
            }])
        );
    }

    #[test]
    fn dotted_paths_reach_nested_claims_and_dotted_names() {
        let id = github();
        assert_eq!(
            claim(&id.claims, "kubernetes.io.namespace"),
            Some(&json!("ci"))
        );
        assert_eq!(
            claim(&id.claims, "kubernetes.io.serviceaccount.name"),
            Some(&json!("deployer"))
        );
        assert_eq!(
            claim(&id.claims, "realm_access.roles"),
            Some(&json!(["offline_access", "db-readers"]))
        );
        assert_eq!(claim(&id.claims, "kubernetes.io.nope"), None);
        assert_eq!(claim(&id.claims, "repository.x"), None);
    }

    #[test]
    fn groups_and_claims_together_and_every_miss_is_named() {
        let r = role(
            "both",
            Some("corp"),
            &["ci-deploy"],
            vec![rule("repository", &["other/*"])],
        );
        let misses = r.check(&github()).unwrap_err();
        assert_eq!(misses.len(), 3, "{misses:?}");
        let id = identity("corp", &["ci-deploy"], json!({"repository": "other/x"}));
        assert!(r.check(&id).is_ok());
    }

    #[test]
    fn grant_collects_every_granting_role_for_the_connection() {
        let roles = Roles::new(vec![
            role("by-repo", None, &[], vec![rule("repository", &["acme/*"])]),
            role("by-group", None, &["ops"], vec![]),
            role("by-env", None, &[], vec![rule("environment", &["prod-*"])]),
            Role {
                connections: vec!["other".into()],
                ..role("elsewhere", None, &[], vec![rule("ref", &["*"])])
            },
        ]);
        let grant = roles.grant(&github(), "db").unwrap();
        assert_eq!(grant.roles, ["by-repo", "by-env"]);
        assert_eq!(grant.claims.len(), 2);
        assert_eq!(roles.grant(&github(), "nope"), None);

        roles.replace(vec![role("by-group", None, &["ops"], vec![])]);
        assert_eq!(roles.grant(&github(), "db"), None);
    }

    #[test]
    fn a_role_without_criteria_is_detectable() {
        assert!(!role("x", None, &[], vec![]).has_criteria());
        assert!(role("x", Some("github"), &[], vec![]).has_criteria());
    }
}
