//! Command rules on interactive shells. With a terminal, the line Enter
//! would run is read off the screen ([`LineWatch`]) once the echo of the
//! last keys has arrived, and judged with the keys themselves; Enter is
//! held until then. Without a terminal (`ssh -T HOST` with commands on
//! stdin) each line of input is the command and goes to the target only
//! once judged.
//!
//! Block: the line never runs. With a terminal it is cancelled upstream
//! (Ctrl-C, as a person would) and a one-line message shown; without one
//! it is dropped and the message goes to stderr. Approve: Enter (or the
//! line) waits for an operator through the same broker as exec requests,
//! keys typed meanwhile held in order and judged after.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use russh::ChannelWriteHalf;
use tokio::sync::mpsc;

use super::approval::Decision;
use super::{ChannelInput, Relay};
use crate::recording::{Direction, EventKind};
use crate::ssh::line::{LineWatch, Shown, candidates, ends_line, split_enter};
use crate::ssh::policy::Verdict;

/// How a watched shell reads lines.
pub(super) enum Watch {
    Terminal(Box<LineWatch>),
    /// No terminal: the bytes of the unfinished line.
    Lines(Vec<u8>),
}

/// Output is taken as the echo of the keys once this long passes without
/// more of it.
const ECHO_QUIET: Duration = Duration::from_millis(15);
/// Enter waits at most this long for the echo of the keys before it.
const ECHO_WAIT: Duration = Duration::from_millis(1500);
/// After a cancel, the shell's answer is taken as complete once this long
/// passes without more output with the cursor on a fresh prompt.
const CANCEL_QUIET: Duration = Duration::from_millis(40);
/// How long a shell may take to answer Ctrl-C with a fresh prompt before
/// the line is taken as kept and the channel closed (counted again from a
/// second press, made half way).
const CANCEL_WAIT: Duration = Duration::from_secs(3);
/// How long a refusal's message may take to reach the screen.
const MESSAGE_WAIT: Duration = Duration::from_millis(500);
/// What the recording shows for a line typed with echo off.
const ECHO_OFF: &str = "[typed without echo]";
/// A line without a terminal longer than this is refused, not buffered.
const MAX_LINE: usize = 64 * 1024;

impl Relay {
    /// Start watching the shell this channel runs.
    pub(super) fn watch_shell(&self) {
        let watch = match self.pty.lock().ok().and_then(|p| *p) {
            Some((cols, rows)) => Watch::Terminal(Box::new(LineWatch::new(cols, rows))),
            None => Watch::Lines(Vec::new()),
        };
        if let Ok(mut w) = self.shell.lock() {
            *w = Some(watch);
        }
    }

    /// Watch what an exec runs, under command rules, when it could be a
    /// shell: with a terminal any program (`ssh -t host bash`), without
    /// one a shell reading commands from stdin (`ssh host bash < x`).
    pub(super) fn watch_exec(&self, command: &str) {
        if !self.relays.target.policy.has_command_rules() {
            return;
        }
        let terminal = self.pty.lock().ok().and_then(|p| *p).is_some();
        if terminal || reads_commands(command) {
            self.watch_shell();
        }
    }

    pub(super) fn watching(&self) -> bool {
        self.shell.lock().map(|w| w.is_some()).unwrap_or(false)
    }

    /// Output the agent sees, for the screen.
    pub(super) fn shown_to_agent(&self, data: &[u8]) {
        if let Ok(mut w) = self.shell.lock()
            && let Some(Watch::Terminal(t)) = w.as_mut()
        {
            t.output(data);
            self.echo.fetch_add(1, Ordering::Release);
            self.shown.notify_one();
        }
    }

    pub(super) fn resize_watch(&self, cols: u32, rows: u32) {
        if let Ok(mut p) = self.pty.lock() {
            *p = Some((cols, rows));
        }
        if let Ok(mut w) = self.shell.lock()
            && let Some(Watch::Terminal(t)) = w.as_mut()
        {
            t.resize(cols, rows);
        }
    }

    /// Keys for a watched shell. `false` ends the relay. Input held while
    /// an approval was pending goes to `backlog`, to be judged in turn.
    pub(super) async fn shell_input(
        &self,
        data: Bytes,
        up: &ChannelWriteHalf<russh::client::Msg>,
        client: &ChannelWriteHalf<russh::server::Msg>,
        inbox: &mut mpsc::Receiver<ChannelInput>,
        backlog: &mut VecDeque<ChannelInput>,
    ) -> bool {
        let terminal = matches!(self.shell.lock().as_deref(), Ok(Some(Watch::Terminal(_))));
        let mut offset = 0;
        for (keys, key) in split_enter(&data) {
            offset += keys.len() + usize::from(key.is_some());
            let line = if terminal {
                if !keys.is_empty() {
                    self.with_terminal(|t| t.typed(keys));
                    if up.data_bytes(Bytes::copy_from_slice(keys)).await.is_err() {
                        return false;
                    }
                }
                let Some(key) = key else { continue };
                if key == 0x03 {
                    // Ctrl-C cancels the line: nothing to judge.
                    self.with_terminal(|t| t.reset());
                    if up.data_bytes(Bytes::from_static(b"\x03")).await.is_err() {
                        return false;
                    }
                    continue;
                }
                self.settle_echo().await;
                let ends = ends_line(key);
                let Some(entered) =
                    self.with_terminal(|t| if ends { t.entered() } else { t.peek() })
                else {
                    return false;
                };
                let keys = entered.keys.trim().to_owned();
                let full_screen = entered.full_screen;
                let prompt = entered.prompt.clone();
                let (shown, judged, full_screen) = match entered.shown {
                    Shown::Unreadable(why) => (Err(why), String::new(), full_screen),
                    Shown::Line(line) if line.trim().is_empty() && !keys.is_empty() => {
                        // Keys typed but nothing shown (echo off: perhaps
                        // a password): judged by the keys, recorded as a
                        // note, not as what was typed.
                        (Ok(ECHO_OFF.to_owned()), keys, full_screen)
                    }
                    Shown::Line(line) => {
                        let judged = format!("{line}\n{keys}\n{}", entered.full);
                        (Ok(line), judged, full_screen)
                    }
                };
                Pending::Terminal {
                    shown,
                    judged,
                    key,
                    ends,
                    full_screen,
                    prompt,
                }
            } else {
                let mut buffer = match self.shell.lock().ok().as_deref_mut() {
                    Some(Some(Watch::Lines(b))) => std::mem::take(b),
                    _ => return false,
                };
                buffer.extend_from_slice(keys);
                let Some(key) = key.filter(|k| *k == b'\n' || *k == b'\r') else {
                    if let Some(k) = key {
                        buffer.push(k);
                    }
                    if buffer.len() > MAX_LINE {
                        let why = format!(
                            "an input line longer than {MAX_LINE} bytes is refused under command rules"
                        );
                        self.line_blocked(client, up, false, "commands", &why, "")
                            .await;
                        buffer.clear();
                    }
                    if let Ok(mut w) = self.shell.lock()
                        && let Some(Watch::Lines(b)) = w.as_mut()
                    {
                        *b = buffer;
                    }
                    continue;
                };
                buffer.push(key);
                Pending::Line(buffer)
            };
            let rest = Bytes::copy_from_slice(&data[offset..]);
            match self.run_line(line, up, client, inbox).await {
                LineEnd::Done => {}
                LineEnd::Stop => return false,
                LineEnd::Held(held) => {
                    // Judge what came while the operator decided, after
                    // the rest of this input.
                    for input in held.into_iter().rev() {
                        backlog.push_front(input);
                    }
                    if !rest.is_empty() {
                        backlog.push_front(ChannelInput::Data(rest));
                    }
                    return true;
                }
            }
        }
        true
    }

    fn with_terminal<T>(&self, f: impl FnOnce(&mut LineWatch) -> T) -> Option<T> {
        match self.shell.lock().ok()?.as_mut()? {
            Watch::Terminal(t) => Some(f(t)),
            Watch::Lines(_) => None,
        }
    }

    /// The agent's end of input on a shell without a terminal: a last line
    /// without a newline still runs, so it is judged first.
    pub(super) async fn shell_eof(
        &self,
        up: &ChannelWriteHalf<russh::client::Msg>,
        client: &ChannelWriteHalf<russh::server::Msg>,
        inbox: &mut mpsc::Receiver<ChannelInput>,
        backlog: &mut VecDeque<ChannelInput>,
    ) -> bool {
        let buffer = match self.shell.lock().ok().as_deref_mut() {
            Some(Some(Watch::Lines(b))) => std::mem::take(b),
            _ => Vec::new(),
        };
        if !buffer.is_empty() {
            match self
                .run_line(Pending::Line(buffer), up, client, inbox)
                .await
            {
                LineEnd::Stop => return false,
                LineEnd::Held(held) => {
                    backlog.extend(held);
                    backlog.push_back(ChannelInput::Eof);
                    return true;
                }
                LineEnd::Done => {}
            }
        }
        up.eof().await.is_ok()
    }

    /// Wait until the echo of the keys before Enter is on the screen.
    async fn settle_echo(&self) {
        let deadline = tokio::time::Instant::now() + ECHO_WAIT;
        loop {
            // The screen shows exactly the keys typed: the echo is in.
            if self.with_terminal(|t| t.shows_keys()).unwrap_or(true) {
                return;
            }
            // Otherwise (history, completion, a redraw) wait for output to
            // pause once the keys' echo has begun.
            let more = tokio::time::timeout(ECHO_QUIET, self.shown.notified()).await;
            let echoed = self.with_terminal(|t| t.echoed()).unwrap_or(true);
            if (more.is_err() && echoed) || tokio::time::Instant::now() >= deadline {
                return;
            }
        }
    }

    /// Record, judge and run (or not) one line.
    async fn run_line(
        &self,
        pending: Pending,
        up: &ChannelWriteHalf<russh::client::Msg>,
        client: &ChannelWriteHalf<russh::server::Msg>,
        inbox: &mut mpsc::Receiver<ChannelInput>,
    ) -> LineEnd {
        let prompt = match &pending {
            Pending::Terminal { prompt, .. } => prompt.clone(),
            Pending::Line(_) => String::new(),
        };
        let (text, judged, terminal, record) = match &pending {
            Pending::Terminal {
                shown: Err(why), ..
            } => {
                let why = format!(
                    "the command line could not be read ({why}); it was cancelled, type it again"
                );
                return self
                    .line_blocked(client, up, true, "commands", &why, &prompt)
                    .await;
            }
            Pending::Terminal {
                shown: Ok(line),
                judged,
                ends,
                full_screen,
                ..
            } => (line.clone(), judged.clone(), true, *ends && !*full_screen),
            Pending::Line(bytes) => {
                let line = String::from_utf8_lossy(bytes)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned();
                (line.clone(), line, false, true)
            }
        };
        let forward = || async {
            let bytes = match &pending {
                Pending::Terminal { key, .. } => Bytes::copy_from_slice(&[*key]),
                Pending::Line(b) => Bytes::copy_from_slice(b),
            };
            up.data_bytes(bytes).await.is_ok()
        };
        if judged.trim().is_empty() {
            return if forward().await {
                LineEnd::Done
            } else {
                LineEnd::Stop
            };
        }
        let policy = self.relays.target.policy.clone();
        let verdict = match candidates(&judged) {
            None => Verdict::Block {
                rule: "commands".into(),
                message: "the line has too many readings to judge".into(),
            },
            Some(all) => {
                let mut verdict = Verdict::Allow;
                for c in &all {
                    match policy.judge_command(c) {
                        Verdict::Allow => {}
                        v @ Verdict::Block { .. } => {
                            verdict = v;
                            break;
                        }
                        v @ Verdict::Approve { .. } => {
                            if matches!(verdict, Verdict::Allow) {
                                verdict = v;
                            }
                        }
                    }
                }
                verdict
            }
        };
        // Lines that run are recorded (durably first under strict
        // recording); keys that may run a line, and keys in full-screen
        // programs, only when a rule stops them.
        if record || !matches!(verdict, Verdict::Allow) {
            self.relays.stats.add_statements(1);
        }
        if (record || !matches!(verdict, Verdict::Allow))
            && let Err(e) = self
                .commit(EventKind::SshLine {
                    channel: self.channel(),
                    line: text.clone(),
                })
                .await
        {
            tracing::error!("shell line refused: it could not be recorded ({e})");
            let why = "the command could not be recorded; it was not run";
            return self
                .line_blocked(client, up, terminal, "recording", why, &prompt)
                .await;
        }
        match verdict {
            Verdict::Allow => {
                if forward().await {
                    LineEnd::Done
                } else {
                    LineEnd::Stop
                }
            }
            Verdict::Block { rule, message } => {
                let why = format!("blocked by policy rule \"{rule}\": {message}");
                tracing::info!(line = %text.escape_debug(), "shell line blocked: {why}");
                self.line_blocked(client, up, terminal, &rule, &why, &prompt)
                    .await
            }
            Verdict::Approve {
                rule,
                timeout,
                approvers,
            } => {
                let mut held = VecDeque::new();
                match self
                    .approval(&text, rule, timeout, approvers, inbox, &mut held, client)
                    .await
                {
                    Decision::Approved => {
                        if !forward().await {
                            return LineEnd::Stop;
                        }
                    }
                    Decision::Refused(reason) => {
                        if let LineEnd::Stop = self
                            .line_cancelled(client, up, terminal, &reason, &prompt)
                            .await
                        {
                            return LineEnd::Stop;
                        }
                    }
                }
                LineEnd::Held(held)
            }
        }
    }

    async fn line_blocked(
        &self,
        client: &ChannelWriteHalf<russh::server::Msg>,
        up: &ChannelWriteHalf<russh::client::Msg>,
        terminal: bool,
        rule: &str,
        why: &str,
        prompt: &str,
    ) -> LineEnd {
        self.tap_note(
            Direction::Gateway,
            EventKind::Blocked {
                rule: rule.to_owned(),
                reason: why.to_owned(),
            },
        )
        .await;
        self.line_cancelled(client, up, terminal, why, prompt).await
    }

    /// Tell the agent its line did not run. With a terminal, cancel it in
    /// the shell (the keys before Enter reached it) with Ctrl-C (pressed
    /// again if half of [`CANCEL_WAIT`] brings no fresh prompt) and check
    /// that the shell let go of it: the cursor must come to rest on a
    /// fresh prompt like the one the line was typed after. Otherwise (a
    /// shell that ignores Ctrl-C: `stty -isig`, a trap; a prompt that
    /// changes each time) the channel is closed, since the kept line would
    /// run at the next Enter.
    async fn line_cancelled(
        &self,
        client: &ChannelWriteHalf<russh::server::Msg>,
        up: &ChannelWriteHalf<russh::client::Msg>,
        terminal: bool,
        why: &str,
        prompt: &str,
    ) -> LineEnd {
        let text = format!("\r\ngatehouse: {why}\r\n");
        if !terminal {
            let _ = client.extended_data_bytes(1, Bytes::from(text)).await;
            return LineEnd::Done;
        }
        self.with_terminal(|t| t.reset());
        // The reason first, so the shell's fresh prompt comes after it;
        // then Ctrl-C, once the reason is on the screen (what follows is
        // the shell's answer).
        let shown_before = self.echo.load(Ordering::Acquire);
        if self.inject.send(Bytes::from(text)).await.is_err() {
            return LineEnd::Stop;
        }
        self.wait_shown(shown_before).await;
        let before = self.echo.load(Ordering::Acquire);
        if up.data_bytes(Bytes::from_static(b"\x03")).await.is_err() {
            return LineEnd::Stop;
        }
        // Wait for the shell's answer to Ctrl-C to come to rest on a fresh
        // prompt. A shell may answer in parts (`^C` at once, the prompt
        // after `PROMPT_COMMAND` or a loaded machine lets it), so a quiet
        // spell alone is not the end of the answer; only the deadline is.
        // Half way there without a fresh prompt, Ctrl-C is pressed once
        // more, as a person would, and the shell gets the whole wait again
        // (a slow prompt the second press interrupts starts over): a shell
        // that lost the first press answers the second, and one that
        // ignores both is still caught.
        let started = tokio::time::Instant::now();
        let mut deadline = started + CANCEL_WAIT;
        let mut again = Some(started + CANCEL_WAIT / 2);
        let mut last = before;
        let let_go = loop {
            tokio::time::sleep(CANCEL_QUIET).await;
            let now = self.echo.load(Ordering::Acquire);
            let at_rest = now != before
                && now == last
                && self
                    .with_terminal(|t| t.at_fresh_prompt(prompt))
                    .unwrap_or(false);
            let at = tokio::time::Instant::now();
            if at_rest || at >= deadline {
                break at_rest;
            }
            if again.is_some_and(|a| at >= a) {
                again = None;
                tracing::info!(
                    answered = now != before,
                    "no fresh prompt after Ctrl-C on a blocked shell line; pressing it again"
                );
                if up.data_bytes(Bytes::from_static(b"\x03")).await.is_err() {
                    return LineEnd::Stop;
                }
                deadline = tokio::time::Instant::now() + CANCEL_WAIT;
            }
            last = now;
        };
        if !let_go {
            let answered = self.echo.load(Ordering::Acquire) != before;
            tracing::warn!(
                answered,
                "a blocked shell line was not cancelled by the shell; closing the channel"
            );
            let text = "\r\ngatehouse: the shell did not cancel the line; closing this channel\r\n";
            let shown_before = self.echo.load(Ordering::Acquire);
            if self
                .inject
                .send(Bytes::from_static(text.as_bytes()))
                .await
                .is_ok()
            {
                self.wait_shown(shown_before).await;
            }
            self.tap_note(
                Direction::Gateway,
                EventKind::Blocked {
                    rule: "commands".into(),
                    reason: "the shell kept a blocked line after Ctrl-C; channel closed".into(),
                },
            )
            .await;
            let _ = up.close().await;
            // The target may keep its side open while the shell lives;
            // the agent's side closes now.
            let _ = client.eof().await;
            let _ = client.close().await;
            return LineEnd::Stop;
        }
        LineEnd::Done
    }

    /// Wait (at most [`MESSAGE_WAIT`]) until output past `shown_before`
    /// has reached the agent: a message injected before a Ctrl-C or a
    /// close is on the screen first.
    async fn wait_shown(&self, shown_before: u64) {
        let until = tokio::time::Instant::now() + MESSAGE_WAIT;
        while self.echo.load(Ordering::Acquire) == shown_before
            && tokio::time::Instant::now() < until
        {
            let _ = tokio::time::timeout(CANCEL_QUIET, self.shown.notified()).await;
        }
    }
}

/// Shells that run the commands they read on stdin when given no command
/// (`bash`, `sh -s`, `busybox sh`, `sudo -s`, `su`).
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "ash", "busybox", "su", "sudo", "tcsh",
    "csh",
];

/// Whether `command` may start a shell that reads commands from stdin:
/// any word of it naming one (`bash`, `nice bash`, `true; sh`, `sh -c
/// sh`). Lines of other programs' stdin are data, not commands.
fn reads_commands(command: &str) -> bool {
    command
        .split(|c: char| {
            c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`' | '\'' | '"')
        })
        .filter(|w| !w.is_empty())
        .any(|w| SHELLS.contains(&w.rsplit('/').next().unwrap_or(w)))
}

/// A line ready to be judged.
enum Pending {
    /// A key that may run the line on a terminal. `shown` is what the
    /// recording gets; `judged` everything matched against the rules (the
    /// screen's line, the keys typed, every row the line spans).
    Terminal {
        shown: Result<String, &'static str>,
        judged: String,
        key: u8,
        /// The key ends the line (Enter, Ctrl-O) rather than possibly
        /// running it.
        ends: bool,
        full_screen: bool,
        /// What stood before the line (to see the shell let go of it).
        prompt: String,
    },
    /// Without a terminal: the line's bytes with its newline.
    Line(Vec<u8>),
}

enum LineEnd {
    Done,
    Stop,
    /// Input that arrived while an operator decided.
    Held(VecDeque<ChannelInput>),
}
