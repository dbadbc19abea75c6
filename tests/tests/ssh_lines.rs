//! Command rules on interactive shells, driven through tmux as a person
//! would type: a blocked line never runs and the shell gets a fresh
//! prompt, a line assembled by editing is judged as the screen shows it, a
//! line under an `approve` rule waits for an operator, and a shell without
//! a terminal has each input line judged before it runs.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{events_of_kind, show_session};
use gatehouse_tests::ssh_client::SSH_CONNECTION;
use gatehouse_tests::sshd::Scratch;
use gatehouse_tests::tmux::Tmux;
use gatehouse_tests::{OutputExt, PolicySpec, SshWorld};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn world() -> Result<SshWorld> {
    SshWorld::start(|c, _| {
        c.policy(PolicySpec::new("default").recording("batched"))
            .raw(
                r#"
[[policies.default.rules]]
name = "no-forbidden"
action = "block"
commands = ["touch */forbidden*", "rm -rf *"]
message = "not from an agent"

[[policies.default.rules]]
name = "needs-ok"
action = "approve"
commands = ["touch */approved*"]
timeout = "1m"
"#,
            )
    })
}

/// An interactive `ssh` to the target in tmux as `who`, at its prompt,
/// with a scratch directory on the target (and its path).
fn terminal(w: &SshWorld, who: &str) -> Result<(Tmux, Scratch, String)> {
    let auth = w.token_auth(&w.token(who)?)?;
    let scratch = w.sshd.scratch()?;
    let dir = scratch.path().display().to_string();
    let t = Tmux::start(&w.ssh_command_line(&auth, SSH_CONNECTION), 100, 30, "xterm")?;
    t.wait_for("$", WAIT)?;
    Ok((t, scratch, dir))
}

fn pending_approval(w: &SshWorld) -> Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = w.gh.run_cli(&["approvals", "list", "--json"])?;
        let text = out.stdout_text();
        let list: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .flat_map(|v| match v {
                Value::Array(a) => a,
                other => vec![other],
            })
            .collect();
        if let Some(id) = list.iter().find_map(|p| p["id"].as_str()) {
            return Ok(id.to_owned());
        }
        if Instant::now() > deadline {
            bail!("no pending approval\n{}", w.gh.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn lines_typed_in_a_terminal_are_judged_as_the_screen_shows_them() -> Result<()> {
    let w = world()?;
    typed_lines(&w).with_context(|| format!("gatehouse's log:\n{}", w.gh.log()))
}

fn typed_lines(w: &SshWorld) -> Result<()> {
    let (t, scratch, dir) = terminal(w, "typist")?;

    // Typed in one go, Enter included: blocked, and the shell still works.
    t.type_text(&format!("touch {dir}/forbidden-1"))?;
    t.keys(&["Enter"])?;
    t.wait_for(
        "blocked by policy rule \"no-forbidden\": not from an agent",
        WAIT,
    )?;
    // Assembled by editing: typed with a typo, corrected with backspace.
    t.type_text(&format!("touch {dir}/forbX"))?;
    t.keys(&["BSpace"])?;
    t.type_text("idden-2")?;
    t.keys(&["Enter"])?;
    t.wait_until(WAIT, "a second refusal", |s| {
        s.matches("blocked by policy rule").count() >= 2
    })?;
    // A shell that answers Ctrl-C in parts: `^C` at once, the fresh prompt
    // only after PROMPT_COMMAND has run (as on a loaded machine). The line
    // is cancelled and the channel stays open.
    t.type_text("PROMPT_COMMAND='sleep 0.4'")?;
    t.keys(&["Enter"])?;
    // Typed once the prompt is back: keys typed ahead of a prompt cannot
    // be told apart from a line the shell kept.
    t.wait_until(WAIT, "the prompt after PROMPT_COMMAND", |s| {
        s.lines()
            .skip_while(|l| !l.contains("PROMPT_COMMAND="))
            .skip(1)
            .any(|l| l.trim_end().ends_with('$'))
    })?;
    t.type_text(&format!("touch {dir}/forbidden-3"))?;
    t.keys(&["Enter"])?;
    t.wait_until(WAIT, "a third refusal", |s| {
        s.matches("blocked by policy rule").count() >= 3
    })?;
    t.type_text("unset PROMPT_COMMAND")?;
    t.keys(&["Enter"])?;
    // Recalled from history (what runs is what the screen shows).
    t.type_text(&format!("touch {dir}/allowed"))?;
    t.keys(&["Enter"])?;
    t.type_text(&format!("ls {dir} && echo listed"))?;
    t.keys(&["Enter"])?;
    t.wait_for("listed", WAIT)?;
    assert!(scratch.path().join("allowed").exists());

    // Held for an operator: the Enter waits, then runs.
    t.type_text(&format!("touch {dir}/approved-1"))?;
    t.keys(&["Enter"])?;
    let id = pending_approval(w)?;
    t.wait_for(&format!("waiting for approval {id}"), WAIT)?;
    assert!(
        !scratch.path().join("approved-1").exists(),
        "ran before approval"
    );
    let out = w.gh.run_cli(&["approvals", "approve", &id])?;
    assert!(out.status.success(), "{}", out.stderr_text());
    let deadline = Instant::now() + WAIT;
    while !scratch.path().join("approved-1").exists() {
        if Instant::now() > deadline {
            bail!("the approved line never ran:\n{}", t.screen()?);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    t.type_text("exit")?;
    t.keys(&["Enter"])?;

    for name in ["forbidden-1", "forbidden-2", "forbidden-3"] {
        assert!(!scratch.path().join(name).exists(), "{name} ran");
    }
    let sessions = common::ended_sessions(&w.gh, "ssh", 1)?;
    let (_, events) = show_session(&w.gh, sessions[0]["id"].as_str().context("id")?)?;
    let lines: Vec<String> = events_of_kind(&events, "ssh_line")
        .iter()
        .filter_map(|e| e["kind"]["line"].as_str().map(str::to_owned))
        .collect();
    for expected in [
        format!("touch {dir}/forbidden-1"),
        format!("touch {dir}/forbidden-2"),
        format!("touch {dir}/forbidden-3"),
        format!("touch {dir}/allowed"),
        format!("touch {dir}/approved-1"),
    ] {
        assert!(lines.contains(&expected), "{expected:?} not in {lines:#?}");
    }
    assert_eq!(events_of_kind(&events, "blocked").len(), 3, "{events:#?}");
    Ok(())
}

/// Ways around the line judgement that must not work: a key bound to run
/// the line other than Enter (Ctrl-O), the alternate screen switched on
/// to look like a full-screen program, and a shell that ignores Ctrl-C.
#[test]
fn other_keys_the_alternate_screen_and_an_uncancellable_shell_do_not_get_past() -> Result<()> {
    let w = world()?;
    let (t, scratch, dir) = terminal(&w, "sly")?;
    // Ctrl-O runs the line in bash (operate-and-get-next).
    t.type_text(&format!("touch {dir}/forbidden-o"))?;
    t.keys(&["C-o"])?;
    t.wait_for("blocked by policy rule", WAIT)?;
    // The screen says "full-screen program"; the keys still are judged.
    t.type_text("printf '\\033[?1049h'")?;
    t.keys(&["Enter"])?;
    std::thread::sleep(Duration::from_millis(500));
    t.type_text(&format!("touch {dir}/forbidden-alt"))?;
    t.keys(&["Enter"])?;
    std::thread::sleep(Duration::from_millis(500));
    t.type_text("printf '\\033[?1049l'")?;
    t.keys(&["Enter"])?;
    // A shell that ignores Ctrl-C keeps the line: the channel is closed.
    t.type_text("stty -isig; trap '' INT")?;
    t.keys(&["Enter"])?;
    std::thread::sleep(Duration::from_millis(500));
    t.type_text(&format!("touch {dir}/forbidden-kept"))?;
    t.keys(&["Enter"])?;
    std::thread::sleep(Duration::from_millis(2500));
    t.keys(&["Enter"])?;
    let deadline = Instant::now() + WAIT;
    while !t.exited()? {
        if Instant::now() > deadline {
            bail!("the channel stayed open:\n{}", t.screen()?);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for name in ["forbidden-o", "forbidden-alt", "forbidden-kept"] {
        assert!(!scratch.path().join(name).exists(), "{name} ran");
    }
    Ok(())
}

/// A shell that lets the first Ctrl-C of a line go by: it echoes keys,
/// keeps what it ran in the file named by `$1`, and answers only a second
/// Ctrl-C with a fresh prompt.
const SLOW_SHELL: &str = r#"stty -icanon -isig -echo min 1 time 0
missed=
line=
printf '$ '
while :; do
  # One key, read without bash's own terminal handling (which would turn
  # signals back on); the dot keeps a newline, nothing is end of input.
  k=$(dd bs=1 count=1 2>/dev/null; echo .)
  k=${k%.}
  case "$k" in
    '') break ;;
    $'\003')
      if [ -n "$missed" ]; then printf '^C\r\n$ '; line=; missed=; else missed=1; fi ;;
    $'\n')
      printf '\r\n'
      [ "$line" = exit ] && break
      printf '%s\n' "$line" >> "$1"
      printf 'ran: %s\r\n$ ' "$line"
      line=
      missed= ;;
    *) printf '%s' "$k"; line="$line$k" ;;
  esac
done
stty sane
"#;

/// A shell that misses the first Ctrl-C still has its blocked line
/// cancelled: the gateway presses Ctrl-C again half way to giving up, and
/// the channel stays open.
#[test]
fn a_shell_that_misses_the_first_ctrl_c_gets_a_second() -> Result<()> {
    let w = world()?;
    let (t, scratch, dir) = terminal(&w, "slow")?;
    std::fs::write(scratch.path().join("slow-shell"), SLOW_SHELL)?;
    t.type_text(&format!("bash {dir}/slow-shell {dir}/ran"))?;
    t.keys(&["Enter"])?;
    t.wait_until(WAIT, "the slow shell's prompt", |s| {
        s.lines().any(|l| l.trim_end() == "$")
    })?;
    t.type_text(&format!("touch {dir}/forbidden-4"))?;
    t.keys(&["Enter"])?;
    t.wait_for("blocked by policy rule", WAIT)?;
    // The channel is still open and the line is gone: what runs next is
    // only what is typed next.
    t.type_text("echo fine")?;
    t.keys(&["Enter"])?;
    t.wait_for("ran: echo fine", WAIT)
        .with_context(|| format!("gatehouse's log:\n{}", w.gh.log()))?;
    t.type_text("exit")?;
    t.keys(&["Enter"])?;
    let ran = std::fs::read_to_string(scratch.path().join("ran"))?;
    assert_eq!(ran, "echo fine\n", "what the shell ran");
    assert!(
        w.gh.log().contains("pressing it again"),
        "the first Ctrl-C was not the one that cancelled:\n{}",
        w.gh.log()
    );
    Ok(())
}

#[test]
fn a_shell_without_a_terminal_has_each_line_judged() -> Result<()> {
    let w = world()?;
    let auth = w.token_auth(&w.token("pipe")?)?;
    let scratch = w.sshd.scratch()?;
    let dir = scratch.path().display().to_string();
    let mut cmd = Command::new("ssh");
    auth.apply(&mut cmd);
    cmd.args(["-T", "-p", &w.port.to_string()])
        .arg(format!("{SSH_CONNECTION}@127.0.0.1"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    {
        let mut stdin = child.stdin.take().context("stdin")?;
        write!(
            stdin,
            "touch {dir}/forbidden-3\ntouch {dir}/ok-1\necho done\ntouch {dir}/ok-2"
        )?;
    }
    let out = child.wait_with_output()?;
    assert!(out.stdout_text().contains("done"), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains("blocked by policy rule \"no-forbidden\""),
        "{}",
        out.stderr_text()
    );
    assert!(!scratch.path().join("forbidden-3").exists());
    assert!(scratch.path().join("ok-1").exists());
    assert!(
        scratch.path().join("ok-2").exists(),
        "the last line, without a newline, ran"
    );
    Ok(())
}
