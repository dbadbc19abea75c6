//! Rules and what they match: a rule is a set of criteria (all must hold)
//! and an action; the first rule that matches a statement decides it.

use std::time::Duration;

use super::classify::StatementInfo;

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Allow,
    /// Refuse with 42501; `message` is shown to the client.
    Block {
        message: Option<String>,
    },
    /// Hold until an operator decides; deny after `timeout`. `approvers`
    /// limits who may decide (empty: any operator marked approver).
    Approve {
        timeout: Duration,
        approvers: Vec<String>,
    },
}

impl Action {
    /// What this action says about something rule `rule` matched;
    /// `default_message` when a block rule gives none.
    pub fn verdict(&self, rule: &str, default_message: &str) -> super::Verdict {
        match self {
            Action::Allow => super::Verdict::Allow,
            Action::Block { message } => super::Verdict::Block {
                rule: rule.to_owned(),
                message: message
                    .clone()
                    .unwrap_or_else(|| default_message.to_owned()),
            },
            Action::Approve { timeout, approvers } => super::Verdict::Approve {
                rule: rule.to_owned(),
                timeout: *timeout,
                approvers: approvers.clone(),
            },
        }
    }
}

/// A table or function name pattern: `name`, `schema.name`, with `*` as a
/// wildcard in either part. Compared case-insensitively, so a rule never
/// misses `"Customers"` because of quoting.
#[derive(Debug, Clone, PartialEq)]
pub struct NamePattern {
    schema: Option<String>,
    name: String,
}

impl NamePattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_lowercase();
        let mut parts: Vec<&str> = text.split('.').collect();
        if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "{text:?} is not `name` or `schema.name` (`*` allowed as a wildcard)"
            ));
        }
        let name = parts.pop().unwrap_or_default().to_owned();
        Ok(NamePattern {
            schema: parts.pop().map(str::to_owned),
            name,
        })
    }

    /// Does a name as the classifier reports it (`name` or `schema.name`,
    /// possibly with more parts for `db.schema.name`) match?
    ///
    /// Unqualified names are resolved by the session's `search_path`, which
    /// the client controls (`SET search_path = ...`), so an unqualified name
    /// matches a qualified pattern on its name part alone: `customers`
    /// matches `public.customers`. This over-matches on purpose.
    pub fn matches(&self, qualified: &str) -> bool {
        let lower: std::borrow::Cow<str> = if qualified.chars().any(char::is_uppercase) {
            qualified.to_lowercase().into()
        } else {
            qualified.into()
        };
        let mut parts = lower.rsplitn(3, '.');
        let name = parts.next().unwrap_or_default();
        let schema = parts.next();
        if !glob(&self.name, name) {
            return false;
        }
        match (&self.schema, schema) {
            (None, _) | (Some(_), None) => true,
            (Some(pattern), Some(schema)) => glob(pattern, schema),
        }
    }
}

/// `*` matches any run of characters; everything else literally.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let Some((head, last)) = pattern.rsplit_once('*') else {
        return pattern == text;
    };
    let mut parts = head.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for piece in parts {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Shown to clients and recorded; from the config or `rule N`.
    pub name: String,
    pub action: Action,
    /// Statement kinds (see `classify::KINDS`); empty = any.
    pub statements: Vec<String>,
    pub tables: Vec<NamePattern>,
    pub functions: Vec<NamePattern>,
    /// `true`: only UPDATE/DELETE without WHERE.
    pub without_where: bool,
}

impl Rule {
    /// All given criteria must hold; within one list any entry may match.
    pub fn matches(&self, info: &StatementInfo) -> bool {
        (self.statements.is_empty()
            || self
                .statements
                .iter()
                .any(|k| info.kinds.contains(k.as_str())))
            && (self.tables.is_empty()
                || info
                    .tables
                    .iter()
                    .any(|t| self.tables.iter().any(|p| p.matches(t))))
            && (self.functions.is_empty()
                || info
                    .functions
                    .iter()
                    .any(|f| self.functions.iter().any(|p| p.matches(f))))
            && (!self.without_where || info.without_where)
    }

    /// Whether this rule can refuse or hold anything.
    pub fn restricts(&self) -> bool {
        !matches!(self.action, Action::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_qualified_and_unqualified_names() {
        let p = NamePattern::parse("public.customers").unwrap();
        assert!(p.matches("public.customers"));
        assert!(p.matches("customers"), "search_path may resolve it there");
        assert!(p.matches("PUBLIC.Customers"));
        assert!(!p.matches("audit.customers"));
        assert!(!p.matches("customers2"));
        let p = NamePattern::parse("customers").unwrap();
        assert!(p.matches("sales.customers"));
        assert!(p.matches("db.sales.customers"));
        let p = NamePattern::parse("pg_*").unwrap();
        assert!(p.matches("pg_catalog.pg_read_file"));
        assert!(!p.matches("lo_export"));
        let p = NamePattern::parse("*_file").unwrap();
        assert!(p.matches("pg_read_binary_file"));
        assert!(NamePattern::parse("a.b.c").is_err());
        assert!(NamePattern::parse("a.").is_err());
    }

    #[test]
    fn glob_edges() {
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXbY"));
        assert!(glob("ab", "ab"));
        assert!(!glob("ab", "abc"));
        assert!(!glob("a*a", "a"));
        assert!(glob("**", "x") && glob("a**b", "ab") && glob("*a", "ba") && glob("a*", "ab"));
        assert!(!glob("*a", "ab") && !glob("a*", "ba") && !glob("", "a") && glob("", ""));
    }

    #[test]
    fn every_criterion_must_hold() {
        let rule = Rule {
            name: "r".into(),
            action: Action::Block { message: None },
            statements: vec!["delete".into()],
            tables: vec![NamePattern::parse("customers").unwrap()],
            functions: vec![],
            without_where: true,
        };
        let mut info = StatementInfo::default();
        info.kinds.insert("delete");
        info.tables.insert("public.customers".into());
        assert!(!rule.matches(&info), "has a WHERE");
        info.without_where = true;
        assert!(rule.matches(&info));
        info.tables.clear();
        info.tables.insert("orders".into());
        assert!(!rule.matches(&info));
    }
}
