//! `[policies.NAME]`: rules and masks, validated into the runtime
//! `SqlPolicy`. Every unknown statement kind, bad pattern, detector or
//! regex is a config error with its line: a rule that silently matches
//! nothing would be a hole nobody sees.

use std::path::Path;
use std::time::Duration;

use gatehouse_actors::mask::{self, MaskRule, Masker, Strategy};
use gatehouse_actors::policy::classify::KINDS;
use gatehouse_actors::policy::{Action, NamePattern, Rule, SqlPolicy, Unreadable};

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
        if r.commands.is_some() {
            c.warn(
                spanned_rule,
                format!("{at}: `commands` rules apply to SSH sessions, which this version does not serve"),
            );
            continue;
        }
        let action = match r.action.get_ref().as_str() {
            "allow" => Action::Allow,
            "block" => Action::Block {
                message: r.message.clone(),
            },
            "approve" => {
                let timeout = c.duration(
                    &r.timeout,
                    &format!("{at}.timeout"),
                    DEFAULT_APPROVAL_TIMEOUT,
                );
                for a in &r.approvers {
                    if !operators
                        .iter()
                        .any(|o| o.approver && o.name.get_ref() == a.get_ref())
                    {
                        c.problem(a, format!("{at}: approver {:?} is not an [[operators]] entry with approver = true", a.get_ref()));
                        ok = false;
                    }
                }
                Action::Approve {
                    timeout,
                    approvers: r.approvers.iter().map(|a| a.get_ref().clone()).collect(),
                }
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
