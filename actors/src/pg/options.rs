//! Settings a client asks for at startup: the `options` parameter
//! (`-c name=value`, `--name=value`, as in `PGOPTIONS`) and startup
//! parameters that name a setting directly (`TimeZone=UTC` from JDBC,
//! `statement_timeout` from node-postgres).
//!
//! A connection allows a list of settings (`startup_options`); anything
//! else refuses the session with a FATAL naming the setting, so a client
//! never believes a setting holds that does not, and cannot override what
//! an administrator pinned with `ALTER ROLE ... SET`. Three settings always
//! pass: the two that change how SQL is lexed (`client_encoding`,
//! `standard_conforming_strings`), which the target reports and under which
//! the statement gate treats every statement as unreadable while they are
//! unsafe, and `application_name`, which every libpq client sends and which
//! only labels the session.
//!
//! The `options` string is split the way PostgreSQL splits it
//! (`pg_split_opts`: whitespace separates, a backslash escapes the next
//! character) and then written out again from the parsed settings, so the
//! target reads exactly what was checked.

/// The settings a connection allows when its `startup_options` is not
/// configured: what drivers commonly set at startup, none of which lets a
/// session do more than its role may.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "application_name",
    "TimeZone",
    "DateStyle",
    "IntervalStyle",
    "extra_float_digits",
];

/// Settings that always pass (see the module docs).
const ALWAYS: &[&str] = &[
    "client_encoding",
    "standard_conforming_strings",
    "application_name",
];

/// Startup parameters that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

/// One setting a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// As PostgreSQL reads it: dashes of `--name=value` become underscores.
    pub name: String,
    pub value: String,
}

/// Why a startup cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("setting \"{0}\" is not allowed at startup on this connection")]
    NotAllowed(String),
    #[error("startup option \"{0}\" is not supported; only -c name=value and --name=value are")]
    Unsupported(String),
    #[error("startup option \"{0}\" requires a value")]
    NoValue(String),
}

/// Split an `options` string as PostgreSQL does.
fn split(options: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = options.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| is_space(*c)) {
            chars.next();
        }
        if chars.peek().is_none() {
            return args;
        }
        let mut arg = String::new();
        let mut escaped = false;
        while let Some(&c) = chars.peek() {
            if is_space(c) && !escaped {
                break;
            }
            chars.next();
            if !escaped && c == '\\' {
                escaped = true;
            } else {
                escaped = false;
                arg.push(c);
            }
        }
        args.push(arg);
    }
}

/// C's `isspace` in the "C" locale, which PostgreSQL's split uses.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// `name=value` of `-c` or `--`, with dashes in the name made underscores.
fn setting(arg: &str, shown: &str) -> Result<Setting, OptionError> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| OptionError::NoValue(shown.to_owned()))?;
    Ok(Setting {
        name: name.replace('-', "_"),
        value: value.to_owned(),
    })
}

/// The settings an `options` string asks for.
pub fn parse(options: &str) -> Result<Vec<Setting>, OptionError> {
    let mut out = Vec::new();
    let mut args = split(options).into_iter();
    while let Some(arg) = args.next() {
        if let Some(long) = arg.strip_prefix("--") {
            out.push(setting(long, &arg)?);
        } else if arg == "-c" {
            let next = args
                .next()
                .ok_or_else(|| OptionError::NoValue(arg.clone()))?;
            out.push(setting(&next, &next)?);
        } else if let Some(attached) = arg.strip_prefix("-c") {
            out.push(setting(attached, &arg)?);
        } else {
            return Err(OptionError::Unsupported(arg));
        }
    }
    Ok(out)
}

/// An `options` string that PostgreSQL splits back into `settings`.
pub fn encode(settings: &[Setting]) -> String {
    let mut out = String::new();
    for s in settings {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("-c ");
        for c in s.name.chars().chain(['=']).chain(s.value.chars()) {
            if c == '\\' || is_space(c) {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// Check a client's startup parameters against `allowed` (setting names,
/// compared as PostgreSQL compares them: ignoring case). Returns the
/// parameters to send the target: the client's, with `options` rewritten
/// from what was checked (or left out when it asks for nothing).
pub fn check(
    params: &[(String, String)],
    allowed: &[String],
) -> Result<Vec<(String, String)>, OptionError> {
    let permitted = |name: &str| {
        ALWAYS
            .iter()
            .chain(NOT_SETTINGS)
            .any(|n| n.eq_ignore_ascii_case(name))
            || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
    };
    let mut out = Vec::with_capacity(params.len());
    for (name, value) in params {
        if name == "options" {
            let settings = parse(value)?;
            if let Some(s) = settings.iter().find(|s| !permitted(&s.name)) {
                return Err(OptionError::NotAllowed(s.name.clone()));
            }
            if !settings.is_empty() {
                out.push((name.clone(), encode(&settings)));
            }
            continue;
        }
        // `_pq_.` names are protocol extensions, not settings; the target
        // never sees them (the gateway speaks protocol 3.0 to it).
        if name.starts_with("_pq_.") {
            continue;
        }
        if !permitted(name) {
            return Err(OptionError::NotAllowed(name.clone()));
        }
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, value: &str) -> Setting {
        Setting {
            name: name.into(),
            value: value.into(),
        }
    }

    fn defaults() -> Vec<String> {
        DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_split_as_postgresql_splits_them() {
        assert_eq!(
            parse("-c search_path=app  --statement-timeout=5s\t-cTimeZone=UTC").unwrap(),
            vec![
                s("search_path", "app"),
                s("statement_timeout", "5s"),
                s("TimeZone", "UTC")
            ]
        );
        // An escaped space stays in the value; it does not start a switch.
        assert_eq!(
            parse(r"-c search_path=a\ -c\ work_mem=1 -c x=\\").unwrap(),
            vec![s("search_path", "a -c work_mem=1"), s("x", "\\")]
        );
        assert_eq!(parse("   ").unwrap(), vec![]);
        assert_eq!(parse("-B 100"), Err(OptionError::Unsupported("-B".into())));
        assert_eq!(parse("-c"), Err(OptionError::NoValue("-c".into())));
        assert_eq!(
            parse("--work_mem"),
            Err(OptionError::NoValue("--work_mem".into()))
        );
        assert_eq!(
            parse("search_path=app"),
            Err(OptionError::Unsupported("search_path=app".into()))
        );
    }

    #[test]
    fn encoding_round_trips_through_the_split() {
        let settings = vec![s("search_path", "a -c work_mem=1"), s("x", "\\ \t")];
        assert_eq!(parse(&encode(&settings)).unwrap(), settings);
    }

    #[test]
    fn only_allowed_settings_pass_in_either_form() {
        let params = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ok = check(
            &params(&[
                ("user", "bot"),
                ("database", "orders"),
                (
                    "options",
                    "-c search_path=app --default-transaction-isolation=serializable",
                ),
                ("timezone", "UTC"),
                ("client_encoding", "LATIN9"),
                ("_pq_.extension", "x"),
            ]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(
            ok,
            params(&[
                ("user", "bot"),
                ("database", "orders"),
                (
                    "options",
                    "-c search_path=app -c default_transaction_isolation=serializable"
                ),
                ("timezone", "UTC"),
                ("client_encoding", "LATIN9"),
            ])
        );
        assert_eq!(
            check(&params(&[("options", "-c work_mem=1GB")]), &defaults()),
            Err(OptionError::NotAllowed("work_mem".into()))
        );
        assert_eq!(
            check(
                &params(&[("default_transaction_read_only", "off")]),
                &defaults()
            ),
            Err(OptionError::NotAllowed(
                "default_transaction_read_only".into()
            ))
        );
        // The settings that change lexing always pass (the gate follows
        // them), and so does the label every libpq client sends.
        assert!(
            check(
                &params(&[
                    ("options", "-c standard_conforming_strings=off"),
                    ("application_name", "psql")
                ]),
                &[]
            )
            .is_ok()
        );
        // An empty list allows nothing else; an empty options string is
        // not sent.
        assert_eq!(check(&params(&[("options", " ")]), &[]).unwrap(), vec![]);
    }
}
