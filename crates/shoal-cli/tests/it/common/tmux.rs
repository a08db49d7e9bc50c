//! A private tmux server for tests of full-screen commands: start a
//! command in a detached session of a given size, type into it
//! (`send-keys`), read its screen (`capture-pane`). Each test gets its own
//! socket (`tmux -L`), so tests never see each other's sessions or the
//! user's; the server is killed when dropped.

use std::process::{Command, Output};

/// Columns and rows of every session: room for a chat's panes.
const WIDTH: &str = "110";
const HEIGHT: &str = "30";

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server on a socket named after `name` and this process.
    pub fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("shoal-test-{name}-{}", std::process::id()),
        }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        // -f /dev/null: no user configuration; -u: UTF-8 for the box drawing.
        Command::new("tmux")
            .args(["-u", "-f", "/dev/null", "-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs (apt-get install tmux)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.tmux(args);
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `program` with `args` in a new session. When the program
    /// ends, the pane says with which status and stays, so its last screen
    /// and any error can still be read.
    pub fn start(&self, session: &str, program: &str, args: &[&str]) {
        let command = std::iter::once(program)
            .chain(args.iter().copied())
            .map(quote)
            .collect::<Vec<_>>()
            .join(" ");
        let shell = format!("{command}; echo \"exited with status $?\"; sleep 3600");
        self.ok(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            WIDTH,
            "-y",
            HEIGHT,
            &shell,
        ]);
    }

    /// Types `text` literally, then Enter.
    pub fn type_line(&self, session: &str, text: &str) {
        self.ok(&["send-keys", "-t", session, "-l", text]);
        self.key(session, "Enter");
    }

    /// Presses one key by its tmux name (`Enter`, `Escape`, `C-c`).
    pub fn key(&self, session: &str, key: &str) {
        self.ok(&["send-keys", "-t", session, key]);
    }

    /// What the session's screen shows now, one line per row.
    pub fn screen(&self, session: &str) -> String {
        self.ok(&["capture-pane", "-p", "-t", session])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// Single-quoted for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
