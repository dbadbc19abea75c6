//! The legacy scp protocol (`scp -O`, and every scp before OpenSSH 9.0):
//! the agent's scp runs `scp -t PATH` (upload to PATH) or `scp -f PATH...`
//! (download) on the target. The command line names the paths, and path
//! rules judge them before the command runs.
//!
//! Paths are split as a POSIX shell would split the words (quotes and
//! backslashes); a command line with anything a shell would treat as more
//! than one command or an expansion (`;`, `|`, `&`, `$`, backquotes,
//! redirections, a newline) is not a plain scp and cannot be judged.

/// Which way a legacy scp moves files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScpDirection {
    /// `-t`: files go to the target.
    Upload,
    /// `-f`: files come from the target.
    Download,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScpCommand {
    pub direction: ScpDirection,
    pub paths: Vec<String>,
    /// `-r`: whole trees, whose file names travel in the scp stream.
    pub recursive: bool,
    /// `-d`: the upload's path must be a directory (several files).
    pub into_dir: bool,
}

/// The program a command line runs, without its directory.
fn program(command: &str) -> &str {
    let first = command.split_whitespace().next().unwrap_or_default();
    first.rsplit('/').next().unwrap_or(first)
}

/// The programs a command line names, without directories or quotes:
/// `nice scp`, `env sftp-server` and `'scp'` name scp and sftp-server.
fn programs(command: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut at = 0;
    command.split_whitespace().map(move |w| {
        let i = command[at..].find(w).map_or(at, |i| at + i);
        at = i + w.len();
        let bare: String = w
            .chars()
            .filter(|c| !matches!(c, '\'' | '"' | '\\'))
            .collect();
        let name = bare.rsplit('/').next().unwrap_or_default().to_owned();
        (i, name)
    })
}

/// Whether `command` runs a file server whose requests the gateway does
/// not see (`sftp-server` spoken raw over an exec, `rsync --server`).
pub fn is_file_server(command: &str) -> bool {
    programs(command).any(|(_, p)| matches!(p.as_str(), "sftp-server" | "rsync" | "internal-sftp"))
}

/// `Some(Ok(..))` for an scp server command, `Some(Err(why))` for one that
/// starts with `scp` but cannot be judged, `None` for any other command.
pub fn parse(command: &str) -> Option<Result<ScpCommand, String>> {
    // `scp`, any path to it (`/usr/bin/scp`), or scp run by another
    // program (`nice scp`): parsed from there on.
    let at = programs(command).find(|(_, p)| p == "scp")?.0;
    let trimmed = &command[at..];
    if program(trimmed) != "scp" {
        // Quoted (`'scp'`): not a plain command line.
        return Some(Err("a quoted scp".into()));
    }
    if command[..at].contains([';', '|', '&', '$', '`', '<', '>', '(', ')', '\n']) {
        return Some(Err("scp after another command".into()));
    }
    let words = match split(trimmed) {
        Ok(w) => w,
        Err(e) => return Some(Err(e)),
    };
    let mut direction = None;
    let mut recursive = false;
    let mut into_dir = false;
    let mut paths = Vec::new();
    let mut options = true;
    for word in words.into_iter().skip(1) {
        if options && word == "--" {
            options = false;
        } else if options && word.starts_with('-') && word.len() > 1 {
            for flag in word[1..].chars() {
                match flag {
                    't' => direction = Some(ScpDirection::Upload),
                    'f' => direction = Some(ScpDirection::Download),
                    'r' => recursive = true,
                    'd' => into_dir = true,
                    // -p, -v, -q: no effect on which paths are used.
                    'p' | 'v' | 'q' => {}
                    other => return Some(Err(format!("scp option -{other} is not understood"))),
                }
            }
        } else {
            paths.push(word);
        }
    }
    Some(match direction {
        Some(direction) if !paths.is_empty() => Ok(ScpCommand {
            direction,
            paths,
            recursive,
            into_dir,
        }),
        Some(_) => Err("scp without a path".into()),
        None => Err("scp without -t or -f is not a file transfer".into()),
    })
}

/// Split into words like a POSIX shell; refuse what a shell would expand
/// or treat as another command.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated quote".into()),
                        },
                        Some('$' | '`') => return Err("an expansion in the command line".into()),
                        Some(c) => word.push(c),
                        None => return Err("unterminated quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => return Err("a trailing backslash".into()),
                    Some(c) => word.push(c),
                }
            }
            ';' | '|' | '&' | '$' | '`' | '<' | '>' | '(' | ')' | '\n' | '*' | '?' | '[' | '~'
            | '{' => {
                return Err(format!("{c:?} in the command line"));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_and_download_name_their_paths() {
        assert_eq!(
            parse("scp -t -- /srv/app/x.tar"),
            Some(Ok(ScpCommand {
                direction: ScpDirection::Upload,
                paths: vec!["/srv/app/x.tar".into()],
                recursive: false,
                into_dir: false,
            }))
        );
        assert_eq!(
            parse("scp -r -f '/etc/my dir' /var/log/a\\ b"),
            Some(Ok(ScpCommand {
                direction: ScpDirection::Download,
                paths: vec!["/etc/my dir".into(), "/var/log/a b".into()],
                recursive: true,
                into_dir: false,
            }))
        );
        assert_eq!(parse("ls -l"), None);
        assert_eq!(parse("scpx -t /"), None);
        // Any path to scp is scp.
        assert!(matches!(parse("/usr/bin/scp -t /etc"), Some(Ok(_))));
        assert!(is_file_server("/usr/lib/openssh/sftp-server -e"));
        assert!(is_file_server("env /usr/lib/openssh/sftp-server"));
        assert!(matches!(parse("nice scp -t /etc"), Some(Ok(_))));
        assert!(matches!(parse("true; scp -t /etc"), Some(Err(_))));
        assert!(matches!(parse("'scp' -t /etc"), Some(Err(_))));
    }

    #[test]
    fn what_a_shell_would_expand_or_chain_cannot_be_judged() {
        for line in [
            "scp -t /tmp; rm -rf /",
            "scp -t $(echo /etc)",
            "scp -f /etc/*",
            "scp -t \"/tmp/`id`\"",
            "scp -t ~root/.ssh",
            "scp -t /tmp && true",
            "scp -x /tmp",
            "scp -t",
            "scp /a /b",
            "scp -t '/unterminated",
        ] {
            assert!(matches!(parse(line), Some(Err(_))), "{line}");
        }
    }
}
