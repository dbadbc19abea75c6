//! The operator console on an SSH session, driven through tmux like a
//! person: an agent's shell through the gateway in one window, `gatehouse
//! console` in another. The live view shows the agent's terminal as the
//! agent sees it and follows it as it changes; `t` lists the lines typed;
//! after the session ends, screen 3 replays the terminal.

mod common;

use std::time::Duration;

use anyhow::Result;
use gatehouse_tests::gatehouse::gatehouse_bin;
use gatehouse_tests::ssh_client::SSH_CONNECTION;
use gatehouse_tests::tmux::Tmux;
use gatehouse_tests::{PolicySpec, SshWorld};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn an_operator_watches_and_replays_an_agents_terminal() -> Result<()> {
    // A command rule makes the gateway read each typed line off the
    // screen; the console lists those lines.
    let w = SshWorld::start(|c, _| {
        c.policy(PolicySpec::new("default").recording("batched"))
            .raw(
                r#"
[[policies.default.rules]]
name = "no-rm"
action = "block"
commands = ["rm -rf *"]
"#,
            )
    })?;
    let auth = w.token_auth(&w.token("shell-bot")?)?;
    let agent = Tmux::start(&w.ssh_command_line(&auth, SSH_CONNECTION), 100, 30, "xterm")?;
    agent.wait_for("$", WAIT)?;
    // The shell computes what the screens must show, so a marker found
    // on the console came from the target's output, not from the keys.
    agent.type_text("echo live-$((6*7))")?;
    agent.keys(&["Enter"])?;
    agent.wait_for("live-42", WAIT)?;

    let console = Tmux::start(
        &format!(
            "{} --config {} console",
            gatehouse_bin()?.display(),
            w.gh.config_path().display()
        ),
        80,
        24,
        "xterm",
    )?;
    console.wait_for("shell-bot", WAIT)?;
    console.keys(&["/"])?;
    console.type_text("shell-bot")?;
    console.keys(&["Enter", "Enter"])?;
    let screen = console.wait_for("live-42", WAIT)?;
    // The session is live, counted, and shows as an SSH session.
    assert!(screen.contains("active"), "{screen}");

    // New output arrives as the agent works.
    agent.type_text("echo next-$((2+3))")?;
    agent.keys(&["Enter"])?;
    console.wait_for("next-5", WAIT)?;
    // Its counters move: bytes relayed, and the shell and both lines as
    // commands.
    console.wait_until(WAIT, "three commands counted", |s| {
        s.contains(", 3 commands")
    })?;
    // `t`: the lines the gateway read off the agent's screen.
    console.keys(&["t"])?;
    let screen = console.wait_for("$ echo next-$((2+3))", WAIT)?;
    assert!(screen.contains("$ echo live-$((6*7))"), "{screen}");

    agent.type_text("exit")?;
    agent.keys(&["Enter"])?;
    agent.wait_until(WAIT, "the agent's ssh to exit", |_| {
        agent.exited().unwrap_or(false)
    })?;

    // Screen 3: the ended session replays as a terminal.
    console.keys(&["q", "3"])?;
    console.wait_for("STARTED (UTC)", WAIT)?;
    console.keys(&["/"])?;
    console.type_text("identity:shell-bot")?;
    console.keys(&["Enter"])?;
    console.wait_for("1 shown", WAIT)?;
    console.keys(&["Enter"])?;
    console.wait_for("playing", WAIT)?;
    console.keys(&["End"])?;
    let screen = console.wait_for("next-5", WAIT)?;
    assert!(screen.contains("live-42"), "{screen}");
    console.keys(&["q", "q"])?;
    console.wait_until(WAIT, "the console to exit", |_| {
        console.exited().unwrap_or(false)
    })?;
    Ok(())
}
