//! What the full-screen commands (`top`, `chat`) share about the
//! terminal: restoring it however they end, and reading keys on a thread
//! of their own.

use ratatui::crossterm::event::{self, Event};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the input thread waits for a key before checking that its
/// command is still running: also how long quitting can take.
const INPUT_POLL: Duration = Duration::from_millis(100);

/// Leaves raw mode and the alternate screen when dropped; before a panic
/// is reported, the hook `ratatui::try_init` installs does the same.
pub struct RestoreTerminal;

impl Drop for RestoreTerminal {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reading the terminal blocks, so it gets a thread of its own, which
/// sends each input as `wrap(input)`; the thread ends once the receiver
/// is dropped.
pub fn read_input<U: Send + 'static>(
    updates: mpsc::Sender<U>,
    wrap: fn(Event) -> U,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !updates.is_closed() {
            match event::poll(INPUT_POLL) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let Ok(input) = event::read() else { return };
            if updates.blocking_send(wrap(input)).is_err() {
                return;
            }
        }
    })
}
