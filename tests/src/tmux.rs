//! Terminal programs under test, driven the way a person drives them:
//! `tmux` runs the program in a pseudo-terminal of a chosen size and
//! `TERM`, `send-keys` types, `capture-pane` reads the screen.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::OutputExt;

/// One tmux server (its own socket) with one window running a program.
pub struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

const TARGET: &str = "t";

impl Tmux {
    /// Run `command` (a shell command line) in a `cols`×`rows` window with
    /// `TERM=term`. The window stays after the program exits, so its last
    /// screen can still be read.
    pub fn start(command: &str, cols: u16, rows: u16, term: &str) -> Result<Tmux> {
        let dir = tempfile::tempdir()?;
        let tmux = Tmux {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        };
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            TARGET,
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            // tmux sets TERM itself; `env` has the last word.
            &format!("exec env TERM={term} {command}"),
        ])
        .context("starting tmux (scripts/install-deps.sh installs it)")?;
        tmux.run(&["set-option", "-t", TARGET, "remain-on-exit", "on"])?;
        Ok(tmux)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("running tmux")?;
        if !out.status.success() {
            bail!("tmux {args:?}: {}", out.stderr_text());
        }
        Ok(out.stdout_text())
    }

    /// Type keys, in tmux's names (`Enter`, `Escape`, `Down`, `C-c`) or
    /// literally with `literal`.
    pub fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", TARGET];
        args.extend(keys);
        self.run(&args).map(drop)
    }

    /// Type `text` as it is.
    pub fn type_text(&self, text: &str) -> Result<()> {
        self.run(&["send-keys", "-t", TARGET, "-l", text]).map(drop)
    }

    /// The screen as text, one line per row.
    pub fn screen(&self) -> Result<String> {
        self.run(&["capture-pane", "-p", "-t", TARGET])
    }

    /// The screen with its attributes as escape sequences (`-e`), to check
    /// what the program asked the terminal for.
    pub fn screen_with_attributes(&self) -> Result<String> {
        self.run(&["capture-pane", "-p", "-e", "-t", TARGET])
    }

    /// Waits until the screen shows `needle`; returns the screen.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_until(timeout, &format!("{needle:?}"), |s| s.contains(needle))
    }

    /// Waits until `pred(screen)` holds; returns the screen.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen()?;
            if pred(&screen) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                bail!("the screen did not show {what} within {timeout:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resize the window (the program gets SIGWINCH or a window change).
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.run(&[
            "resize-window",
            "-t",
            TARGET,
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ])
        .map(drop)
    }

    /// Whether the program has exited (the window remains).
    pub fn exited(&self) -> Result<bool> {
        Ok(self
            .run(&["display-message", "-p", "-t", TARGET, "#{pane_dead}"])?
            .trim()
            == "1")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}
