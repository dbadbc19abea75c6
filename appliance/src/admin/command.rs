//! What an operator may run over `ssh -p ADMIN_PORT NAME@appliance COMMAND`.
//!
//! The command line is split into words like a shell would (quotes, no
//! expansion) and must be one of the `gatehouse` subcommands below; it then
//! runs as a child `gatehouse --config CONFIG WORDS...` (never through a
//! shell), so the endpoint and the local CLI share one grammar and one
//! implementation. Options that name files on the appliance or change who
//! acts are refused; `approvals approve|deny` always act as the
//! authenticated operator.

/// `(subcommand, its verbs)` an operator may run.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "recordings",
        &["list", "show", "export", "verify", "status", "purges"],
    ),
    ("approvals", &["list", "approve", "deny"]),
];

/// Options an operator may not give: the config and files on the
/// appliance are the daemon's, and identity comes from the SSH key.
const REFUSED_OPTIONS: &[&str] = &[
    "--config",
    "--log-format",
    "--archive",
    "--public-key",
    "--as",
];

pub const HELP: &str = "\
Gatehouse admin endpoint. Commands (as for the local `gatehouse` CLI):
  recordings list [--json] [--since 1d] [--until DATE]
  recordings show ID [--json]
  recordings export ID [--format jsonl|asciicast]
  recordings export --since 2026-11-01 [--until DATE] --format archive > out.tar.zst
  recordings verify ID | --all
  recordings status | purges
  approvals list [--json]
  approvals approve ID
  approvals deny ID [--reason TEXT]
Files: sftp/scp read /recordings/YYYY-MM-DD/ID.{jsonl,json,cast} (read-only).
";

/// What to run for an exec request.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Print the help text.
    Help,
    /// Run `gatehouse` with these arguments (after the forced `--config`).
    Run(Vec<String>),
}

/// Decide what `line` runs for `operator`, or why it may not.
pub fn plan(line: &str, operator: &str) -> Result<Plan, String> {
    let words = split(line)?;
    let Some(first) = words.first() else {
        return Ok(Plan::Help);
    };
    if matches!(first.as_str(), "help" | "--help" | "-h") {
        return Ok(Plan::Help);
    }
    let Some((_, verbs)) = ALLOWED.iter().find(|(sub, _)| sub == first) else {
        return Err(format!("unknown command {first:?}; try `help`"));
    };
    let verb = words.get(1).map(String::as_str).unwrap_or("");
    if !verbs.contains(&verb) && !matches!(verb, "--help" | "-h") {
        return Err(format!(
            "`{first} {verb}` is not available here; try `help`"
        ));
    }
    if let Some(w) = words.iter().find(|w| {
        REFUSED_OPTIONS
            .iter()
            .any(|o| *w == o || w.starts_with(&format!("{o}=")))
    }) {
        return Err(format!(
            "option {w:?} is not available on the admin endpoint"
        ));
    }
    let mut args = words;
    if args[0] == "approvals" && matches!(args[1].as_str(), "approve" | "deny") {
        args.push("--as".into());
        args.push(operator.to_owned());
    }
    Ok(Plan::Run(args))
}

/// Split a command line into words: whitespace separates, `'…'` is
/// literal, `"…"` allows `\"` and `\\`, a backslash outside quotes escapes
/// the next character. Nothing is expanded.
fn split(line: &str) -> Result<Vec<String>, String> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("control characters in the command".into());
    }
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated ' in the command".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("unterminated \" in the command".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unterminated \" in the command".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a trailing \\ in the command".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Vec<String> {
        match plan(line, "alice").unwrap() {
            Plan::Run(args) => args,
            Plan::Help => panic!("{line:?} planned as help"),
        }
    }

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        assert_eq!(
            split(r#"approvals deny 12 --reason "not \"now\"" 'it''s' a\ b $HOME"#).unwrap(),
            [
                "approvals",
                "deny",
                "12",
                "--reason",
                "not \"now\"",
                "its",
                "a b",
                "$HOME"
            ]
        );
        assert_eq!(split("  ").unwrap(), Vec::<String>::new());
        assert!(split("a 'b").is_err());
        assert!(split("a \"b").is_err());
        assert!(split("a\nb").is_err());
    }

    #[test]
    fn allowed_commands_run_with_their_arguments() {
        assert_eq!(
            run("recordings export --since 2026-11-01 --format archive"),
            [
                "recordings",
                "export",
                "--since",
                "2026-11-01",
                "--format",
                "archive"
            ]
        );
        assert_eq!(
            run("recordings list --since 1d"),
            ["recordings", "list", "--since", "1d"]
        );
        assert_eq!(plan("", "alice").unwrap(), Plan::Help);
        assert_eq!(plan("help", "alice").unwrap(), Plan::Help);
    }

    #[test]
    fn decisions_are_made_as_the_authenticated_operator() {
        assert_eq!(
            run("approvals approve 7"),
            ["approvals", "approve", "7", "--as", "alice"]
        );
        assert!(plan("approvals approve 7 --as bob", "alice").is_err());
        assert!(plan("approvals approve 7 --as=bob", "alice").is_err());
    }

    #[test]
    fn everything_else_is_refused() {
        for line in [
            "serve",
            "check-config",
            "recordings purge --before 1d",
            "recordings sftp-server",
            "recordings list --config /tmp/evil.toml",
            "recordings verify --archive /etc/shadow --public-key /etc/shadow",
            "recordings list --config=/tmp/x",
            "--config /tmp/x recordings list",
            "sh -c id",
            "recordings",
        ] {
            assert!(plan(line, "alice").is_err(), "{line:?} was allowed");
        }
    }
}
