//! `[policies.NAME]`: rules and masks, validated into the runtime
//! `SqlPolicy`. Every unknown statement kind, bad pattern, detector or
//! regex is a config error with its line: a rule that silently matches
//! nothing would be a hole nobody sees.

use std::path::Path;
use std::time::Duration;

use gatehouse_actors::mask::{self, MaskRule, Masker, Strategy};
use gatehouse_actors::policy::classify::KINDS;
use gatehouse_actors::policy::{Action, NamePattern, Rule, SqlPolicy, Unreadable};
use gatehouse_actors::ssh::policy::{CommandRule, DEFAULT_ENV, PathAccess, PathRule, SshPolicy};

use super::load::Checker;
use super::{Operator, Policy};

/// How long an approval waits when the rule does not say.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// Characters `partial` keeps when the mask does not say: enough to tell
/// two cards apart, as receipts do.
const DEFAULT_PARTIAL_KEEP: usize = 4;

/// File (in data_dir) holding the key of the `hash` strategy.
pub const MASK_KEY_FILE: &str = "mask-hash.key";

/// The `hash` strategy's key: read from `data_dir`, or a fresh one (and
/// `true`: serve writes it before the first session, so hashes stay stable
/// across restarts).
pub fn mask_key(data_dir: &Path) -> ([u8; 32], bool) {
    if let Ok(bytes) = std::fs::read(data_dir.join(MASK_KEY_FILE))
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return (key, false);
    }
    let mut key = [0u8; 32];
    // aws-lc's RNG; a failure here means the process cannot make keys at
    // all, and a zero key would make hashes guessable.
    aws_lc_rs::rand::fill(&mut key).expect("system random number generator");
    (key, true)
}

/// Write a new mask key (owner-only) so hashes stay stable across restarts.
pub fn save_mask_key(data_dir: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data_dir.join(MASK_KEY_FILE))?;
    f.write_all(key)?;
    f.sync_all()
}

pub(super) fn sql_policy(
    c: &mut Checker<'_>,
    name: &str,
    spanned: &toml::Spanned<Policy>,
    key: &[u8; 32],
    operators: &[Operator],
) -> Option<SqlPolicy> {
    let policy = spanned.get_ref();
    let mut ok = true;
    let default_block = match policy.default.as_ref().map(|d| (d, d.get_ref().as_str())) {
        None | Some((_, "allow")) => false,
        Some((_, "block")) => true,
        Some((at, other)) => {
            c.problem(
                at,
                format!("policies.{name}.default: {other:?} is not `allow` or `block`"),
            );
            ok = false;
            false
        }
    };
    let unparsed = match policy.unparsed.as_ref().map(|d| (d, d.get_ref().as_str())) {
        None | Some((_, "block")) => Unreadable::Block,
        Some((_, "allow")) => Unreadable::Allow,
        Some((at, other)) => {
            c.problem(
                at,
                format!("policies.{name}.unparsed: {other:?} is not `block` or `allow`"),
            );
            ok = false;
            Unreadable::Block
        }
    };

    let mut rules = Vec::new();
    for (i, spanned_rule) in policy.rules.iter().enumerate() {
        let r = spanned_rule.get_ref();
        let rule_name = r.name.clone().unwrap_or_else(|| format!("rule {}", i + 1));
        let at = format!("policies.{name}.rules[{}] ({rule_name})", i + 1);
        if r.commands.is_some() || r.paths.is_some() {
            // An SSH rule: `ssh_policy` reads it.
            continue;
        }
        let action = match r.action.get_ref().as_str() {
            "allow" => Action::Allow,
            "block" => Action::Block {
                message: r.message.clone(),
            },
            "approve" => {
                ok &= known_approvers(c, &at, r, operators);
                approve_action(c, &at, r)
            }
            other => {
                c.problem(
                    &r.action,
                    format!("{at}: action {other:?} is not `allow`, `block` or `approve`"),
                );
                ok = false;
                continue;
            }
        };
        if r.timeout.is_some() && !matches!(action, Action::Approve { .. }) {
            c.problem(
                spanned_rule,
                format!("{at}: `timeout` only applies to `approve` rules"),
            );
            ok = false;
        }
        let mut statements = Vec::new();
        for k in &r.statements {
            let k = k.to_lowercase();
            if KINDS.contains(&k.as_str()) {
                statements.push(k);
            } else {
                c.problem(
                    spanned_rule,
                    format!(
                        "{at}: unknown statement kind {k:?}; known kinds: {}",
                        KINDS.join(", ")
                    ),
                );
                ok = false;
            }
        }
        let mut patterns = |list: &[String], what: &str, c: &mut Checker<'_>| {
            let mut out = Vec::new();
            for t in list {
                match NamePattern::parse(t) {
                    Ok(p) => out.push(p),
                    Err(e) => {
                        c.problem(spanned_rule, format!("{at}: {what}: {e}"));
                        ok = false;
                    }
                }
            }
            out
        };
        let tables = patterns(&r.tables, "tables", c);
        let functions = patterns(&r.functions, "functions", c);
        rules.push(Rule {
            name: rule_name,
            action,
            statements,
            tables,
            functions,
            without_where: r.without_where,
        });
    }

    let mut mask_rules = Vec::new();
    for (i, spanned_mask) in policy.masks.iter().enumerate() {
        let m = spanned_mask.get_ref();
        let mask_name = m.name.clone().unwrap_or_else(|| format!("mask {}", i + 1));
        let at = format!("policies.{name}.masks[{}] ({mask_name})", i + 1);
        if m.columns.is_empty() && m.detectors.is_empty() && m.regex.is_empty() {
            c.problem(
                spanned_mask,
                format!("{at}: give `columns`, `detectors` or `regex`"),
            );
            ok = false;
        }
        for d in &m.detectors {
            if !mask::DETECTORS.contains(&d.as_str()) {
                c.problem(
                    spanned_mask,
                    format!(
                        "{at}: unknown detector {d:?}; known: {}",
                        mask::DETECTORS.join(", ")
                    ),
                );
                ok = false;
            }
        }
        let keep = m.keep.unwrap_or(DEFAULT_PARTIAL_KEEP);
        let strategy = match m.strategy.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "redact")) => Strategy::Redact,
            Some((_, "partial")) => Strategy::Partial { keep },
            Some((_, "hash")) => Strategy::Hash,
            Some((_, "null")) => Strategy::Null,
            Some((s, other)) => {
                c.problem(
                    s,
                    format!(
                        "{at}: strategy {other:?} is not `redact`, `partial`, `hash` or `null`"
                    ),
                );
                ok = false;
                Strategy::Redact
            }
        };
        if m.keep.is_some() && !matches!(strategy, Strategy::Partial { .. }) {
            c.problem(
                spanned_mask,
                format!("{at}: `keep` only applies to strategy = \"partial\""),
            );
            ok = false;
        }
        mask_rules.push(MaskRule {
            name: mask_name,
            columns: m.columns.iter().map(|c| c.to_lowercase()).collect(),
            detectors: m.detectors.clone(),
            regex: m.regex.clone(),
            strategy,
        });
    }
    let masker = if mask_rules.is_empty() {
        None
    } else {
        match Masker::new(mask_rules, *key) {
            // Policies live as long as the process; a 'static masker lets
            // COPY streams borrow it without reference counting per row.
            Ok(m) => Some(&*Box::leak(Box::new(m))),
            Err(e) => {
                c.problem(spanned, format!("policies.{name}.masks: {e}"));
                ok = false;
                None
            }
        }
    };
    ok.then(|| SqlPolicy {
        name: name.to_owned(),
        rules,
        default_block,
        unparsed,
        masker,
    })
}

/// Whether every approver a rule names is an operator marked approver
/// (each one that is not is a problem on its line).
fn known_approvers(
    c: &mut Checker<'_>,
    at: &str,
    r: &super::RuleConfig,
    operators: &[Operator],
) -> bool {
    let mut ok = true;
    for a in &r.approvers {
        if !operators
            .iter()
            .any(|o| o.approver && o.name.get_ref() == a.get_ref())
        {
            c.problem(
                a,
                format!(
                    "{at}: approver {:?} is not an [[operators]] entry with approver = true",
                    a.get_ref()
                ),
            );
            ok = false;
        }
    }
    ok
}

/// An `approve` rule's action: its timeout (default 5m) and approvers.
fn approve_action(c: &mut Checker<'_>, at: &str, r: &super::RuleConfig) -> Action {
    Action::Approve {
        timeout: c.duration(
            &r.timeout,
            &format!("{at}.timeout"),
            DEFAULT_APPROVAL_TIMEOUT,
        ),
        approvers: r.approvers.iter().map(|a| a.get_ref().clone()).collect(),
    }
}

/// The SSH side of `[policies.NAME]`: command and path rules, the env
/// allowlist, port forwarding; masks are the SQL side's masker (the same
/// detectors and strategies, applied to terminal output).
pub(super) fn ssh_policy(
    c: &mut Checker<'_>,
    name: &str,
    spanned: &toml::Spanned<Policy>,
    masker: Option<&'static gatehouse_actors::mask::Masker>,
    operators: &[Operator],
) -> Option<SshPolicy> {
    let policy = spanned.get_ref();
    let mut ok = true;
    let mut commands = Vec::new();
    let mut paths = Vec::new();
    for (i, spanned_rule) in policy.rules.iter().enumerate() {
        let r = spanned_rule.get_ref();
        if r.commands.is_none() && r.paths.is_none() {
            continue;
        }
        let rule_name = r.name.clone().unwrap_or_else(|| format!("rule {}", i + 1));
        let at = format!("policies.{name}.rules[{}] ({rule_name})", i + 1);
        if !r.statements.is_empty()
            || !r.tables.is_empty()
            || !r.functions.is_empty()
            || r.without_where
        {
            c.problem(
                spanned_rule,
                format!("{at}: `commands`/`paths` (SSH) and SQL criteria cannot share a rule; write two rules"),
            );
            ok = false;
            continue;
        }
        if r.commands.is_some() && r.paths.is_some() {
            c.problem(
                spanned_rule,
                format!("{at}: give `commands` or `paths`, not both"),
            );
            ok = false;
            continue;
        }
        let action = r.action.get_ref().as_str();
        if let Some(list) = &r.commands {
            if list.is_empty() || list.iter().any(|p| p.trim().is_empty()) {
                c.problem(
                    spanned_rule,
                    format!("{at}: `commands` needs non-empty patterns"),
                );
                ok = false;
            }
            let action = match action {
                "allow" => Action::Allow,
                "block" => Action::Block {
                    message: r.message.clone(),
                },
                "approve" => {
                    ok &= known_approvers(c, &at, r, operators);
                    approve_action(c, &at, r)
                }
                other => {
                    c.problem(
                        &r.action,
                        format!("{at}: action {other:?} is not `allow`, `block` or `approve` (command rules)"),
                    );
                    ok = false;
                    continue;
                }
            };
            commands.push(CommandRule {
                name: rule_name,
                commands: list.clone(),
                action,
            });
        } else if let Some(list) = &r.paths {
            if list.is_empty() || list.iter().any(|p| p.trim().is_empty()) {
                c.problem(
                    spanned_rule,
                    format!("{at}: `paths` needs non-empty patterns"),
                );
                ok = false;
            }
            let access = match action {
                "allow" => PathAccess::Allow,
                "block" => PathAccess::Block,
                "read_only" => PathAccess::ReadOnly,
                other => {
                    c.problem(
                        &r.action,
                        format!("{at}: action {other:?} is not `allow`, `block` or `read_only` (path rules)"),
                    );
                    ok = false;
                    continue;
                }
            };
            if r.timeout.is_some() || !r.approvers.is_empty() {
                c.problem(
                    spanned_rule,
                    format!("{at}: path rules cannot be approved; use `block` or `read_only`"),
                );
                ok = false;
            }
            paths.push(PathRule {
                name: rule_name,
                paths: list.clone(),
                access,
                message: r.message.clone(),
            });
        }
    }
    let env = policy
        .env
        .clone()
        .unwrap_or_else(|| DEFAULT_ENV.iter().map(|s| s.to_string()).collect());
    ok.then(|| SshPolicy {
        name: name.to_owned(),
        strict_recording: *policy.recording.get_ref() == super::RecordingMode::Strict,
        port_forwarding: policy.port_forwarding.unwrap_or(false),
        env,
        commands,
        paths,
        masker,
    })
}
