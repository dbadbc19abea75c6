//! The SSH parts of a policy: which environment variables reach the
//! target, what happens to commands (exec requests and interactive lines)
//! and to file paths (SFTP, scp), and whether ports may be forwarded.
//!
//! Commands and paths are matched with shell-style globs where `*` matches
//! any run of characters (including `/` and spaces) and `?` one character;
//! the first rule that matches decides. A command rule sees the command
//! line with surrounding whitespace trimmed and runs of blanks collapsed, so
//! `rm  -rf /` cannot slip past `rm -rf /*` with an extra space.

pub use crate::policy::{Action, Verdict};

/// A command rule: the same actions and verdicts as SQL rules (block with
/// a message, approve through the same broker), matched on command lines.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRule {
    pub name: String,
    pub commands: Vec<String>,
    pub action: Action,
}

/// What a path rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathAccess {
    Allow,
    Block,
    /// Reads and listings pass; writes, removes, renames, mkdir, setstat
    /// and symlinks are refused.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathRule {
    pub name: String,
    pub paths: Vec<String>,
    pub access: PathAccess,
    pub message: Option<String>,
}

/// The default environment allowlist: locale and terminal type, what
/// OpenSSH clients send by default (`SendEnv LANG LC_*`, `TERM` in the pty
/// request); everything else could change how the target's shell behaves
/// (`LD_PRELOAD`, `BASH_ENV`).
pub const DEFAULT_ENV: &[&str] = &["LANG", "LC_*", "TERM"];

#[derive(Debug, Clone)]
pub struct SshPolicy {
    pub name: String,
    /// Events are durable before the command they describe runs.
    pub strict_recording: bool,
    /// `direct-tcpip` and `tcpip-forward`; refused unless true.
    pub port_forwarding: bool,
    /// Variable-name globs the agent may set.
    pub env: Vec<String>,
    pub commands: Vec<CommandRule>,
    pub paths: Vec<PathRule>,
    /// Output masking; lives as long as the process.
    pub masker: Option<&'static crate::mask::Masker>,
}

/// A file operation's verdict: `Err` carries the rule and the message the
/// agent sees with `SSH_FX_PERMISSION_DENIED`.
pub type PathVerdict = Result<(), (String, String)>;

impl SshPolicy {
    /// A policy that allows everything and masks nothing.
    pub fn allow_all(name: &str) -> Self {
        SshPolicy {
            name: name.to_owned(),
            strict_recording: false,
            port_forwarding: false,
            env: DEFAULT_ENV.iter().map(|s| s.to_string()).collect(),
            commands: Vec::new(),
            paths: Vec::new(),
            masker: None,
        }
    }

    pub fn env_allowed(&self, name: &str) -> bool {
        self.env.iter().any(|p| glob(p, name))
    }

    /// Whether interactive lines need watching at all.
    pub fn has_command_rules(&self) -> bool {
        self.commands
            .iter()
            .any(|r| !matches!(r.action, Action::Allow))
    }

    pub fn judge_command(&self, command: &str) -> Verdict {
        let line = normalize(command);
        if line.is_empty() {
            return Verdict::Allow;
        }
        self.commands
            .iter()
            .find(|rule| rule.commands.iter().any(|p| glob(&normalize(p), &line)))
            .map_or(Verdict::Allow, |rule| {
                rule.action.verdict(&rule.name, "command not allowed")
            })
    }

    /// May `path` be accessed, for writing when `write`?
    pub fn judge_path(&self, path: &str, write: bool) -> PathVerdict {
        let path = normalize_path(path);
        for rule in &self.paths {
            if rule
                .paths
                .iter()
                .any(|p| glob(p, &path) || glob(p, &format!("{path}/")))
            {
                let refused = match rule.access {
                    PathAccess::Allow => false,
                    PathAccess::Block => true,
                    PathAccess::ReadOnly => write,
                };
                return if refused {
                    Err((
                        rule.name.clone(),
                        rule.message.clone().unwrap_or_else(|| match rule.access {
                            PathAccess::ReadOnly => format!("{path} is read-only"),
                            _ => format!("access to {path} is not allowed"),
                        }),
                    ))
                } else {
                    Ok(())
                };
            }
        }
        Ok(())
    }

    /// A rule that protects something below `path` (a `read_only` or
    /// `block` pattern whose fixed start lies inside it): renaming or
    /// removing `path`, or writing a tree into it with legacy scp, would
    /// move or replace what the rule protects. `Err` as [`judge_path`].
    ///
    /// [`judge_path`]: Self::judge_path
    /// With `write` false only `block` rules count (reading a tree whose
    /// parts are read-only is fine).
    ///
    /// With `any_depth` false only paths directly inside `path` count (a
    /// non-recursive scp upload writes `path` or `path/NAME`).
    pub fn guards_below(&self, path: &str, write: bool, any_depth: bool) -> PathVerdict {
        let path = normalize_path(path);
        let dir = if path.ends_with('/') {
            path.clone()
        } else {
            format!("{path}/")
        };
        for rule in &self.paths {
            if rule.access == PathAccess::Allow || (!write && rule.access == PathAccess::ReadOnly) {
                continue;
            }
            for pattern in &rule.paths {
                // The pattern can match something below `dir` when one of
                // its beginnings matches `dir/` itself (`/home/*` matches
                // `/home/agent/`, so `/home/*/.ssh/*` reaches below it).
                let reaches_below = pattern
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain(std::iter::once(pattern.len()))
                    .any(|k| {
                        glob(&pattern[..k], &dir) && (any_depth || !pattern[k..].contains('/'))
                    });
                if reaches_below || glob(pattern, &path) {
                    return Err((
                        rule.name.clone(),
                        format!("{path} holds paths that rule \"{}\" protects", rule.name),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn has_path_rules(&self) -> bool {
        !self.paths.is_empty()
    }
}

/// Trim, and collapse runs of spaces and tabs to one space.
fn normalize(command: &str) -> String {
    command.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `.` and `..` resolved and repeated slashes removed, so `/etc/../etc//x`
/// is judged as `/etc/x`. Relative paths stay relative (the target resolves
/// them against the login directory, which rules should name absolutely).
pub fn normalize_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() && !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

/// `*` matches any run of characters, `?` exactly one; everything else
/// literally. Iterative with backtracking to the last star: linear in
/// practice, never exponential.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> SshPolicy {
        let mut p = SshPolicy::allow_all("p");
        p.commands = vec![
            CommandRule {
                name: "no-wipe".into(),
                commands: vec!["rm -rf /*".into(), "shutdown*".into()],
                action: Action::Block { message: None },
            },
            CommandRule {
                name: "sudo".into(),
                commands: vec!["sudo *".into()],
                action: Action::Approve {
                    timeout: Duration::from_secs(60),
                    approvers: vec![],
                },
            },
        ];
        p.paths = vec![
            PathRule {
                name: "etc".into(),
                paths: vec!["/etc/*".into()],
                access: PathAccess::ReadOnly,
                message: Some("managed".into()),
            },
            PathRule {
                name: "secrets".into(),
                paths: vec!["/srv/secret*".into()],
                access: PathAccess::Block,
                message: None,
            },
        ];
        p
    }

    #[test]
    fn globs() {
        assert!(glob("rm -rf /*", "rm -rf /"));
        assert!(glob("rm -rf /*", "rm -rf /var"));
        assert!(!glob("rm -rf /*", "rm -rf ./x"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
        assert!(glob("*a*b*", "xxaxxbxx"));
        assert!(!glob("*a*b", "xxaxxbxx"));
        // Pathological pattern stays fast.
        let long = "a".repeat(10_000);
        assert!(!glob("*a*a*a*a*a*b", &long));
    }

    #[test]
    fn commands_first_match_wins_and_spacing_does_not_matter() {
        let p = policy();
        assert!(
            matches!(p.judge_command("  rm   -rf  /etc "), Verdict::Block { rule, .. } if rule == "no-wipe")
        );
        assert!(matches!(
            p.judge_command("sudo reboot"),
            Verdict::Approve { .. }
        ));
        assert_eq!(p.judge_command("ls -l"), Verdict::Allow);
        assert_eq!(p.judge_command("   "), Verdict::Allow);
    }

    #[test]
    fn paths_are_normalised_before_matching() {
        let p = policy();
        assert!(p.judge_path("/etc/passwd", false).is_ok());
        assert_eq!(
            p.judge_path("/tmp/../etc//passwd", true),
            Err(("etc".into(), "managed".into()))
        );
        assert!(p.judge_path("/srv/secrets/a", false).is_err());
        assert!(p.judge_path("/home/x", true).is_ok());
        // The directory itself is covered by `/etc/*`.
        assert!(p.judge_path("/etc", true).is_err());
        assert_eq!(normalize_path("a/./b/../c"), "a/c");
        assert_eq!(normalize_path("/../x"), "/x");
    }

    #[test]
    fn env_allowlist() {
        let p = policy();
        assert!(p.env_allowed("LANG") && p.env_allowed("LC_ALL") && p.env_allowed("TERM"));
        assert!(!p.env_allowed("LD_PRELOAD"));
    }
}
