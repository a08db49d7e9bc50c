//! A child process's stdout read line by line on a thread of its own, so
//! a test can wait for the next line with a timeout instead of blocking.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::Duration;

pub struct Lines {
    lines: mpsc::Receiver<String>,
}

impl Lines {
    pub fn new(output: impl Read + Send + 'static) -> Lines {
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { lines }
    }

    /// The next line, or a failure naming `what` was awaited.
    pub fn next(&self, within: Duration, what: &str) -> String {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no line with {what} within {within:?}: {e}"))
    }
}
