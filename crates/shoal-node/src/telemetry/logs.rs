//! A node's recent log lines, kept in a bounded ring so an operator reads
//! a node's warnings and errors through its API (`GET /v1/logs`) instead
//! of its stderr.
//!
//! The ring is fed by a `tracing` layer: install [`LogRing::layer`] in the
//! process's subscriber (`shoal node` does) and hand the ring to the node
//! with [`NodeBuilder::logs`](crate::NodeBuilder::logs). Only lines at
//! [`LogRing`]'s level or above are kept, so a busy node's debug chatter
//! costs nothing here.

use crate::clock::now_ms;
use shoal_proto::api::{LogLevel, LogLine};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// Lines a ring keeps by default.
pub const LOG_LINES: usize = 1000;
/// Longest message kept; longer ones are cut (with `…`).
const MAX_MESSAGE_BYTES: usize = 2048;

/// The newest log lines at or above a level, oldest dropped first.
pub struct LogRing {
    level: LogLevel,
    capacity: usize,
    state: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    next_seq: u64,
}

impl LogRing {
    /// A ring of `capacity` lines at `level` or above.
    pub fn new(level: LogLevel, capacity: usize) -> Arc<LogRing> {
        Arc::new(LogRing {
            level,
            capacity: capacity.max(1),
            state: Mutex::new(Ring::default()),
        })
    }

    /// Warnings and errors, the last [`LOG_LINES`] of them.
    pub fn warnings() -> Arc<LogRing> {
        LogRing::new(LogLevel::Warn, LOG_LINES)
    }

    /// The `tracing` layer that feeds this ring.
    pub fn layer(self: &Arc<Self>) -> RingLayer {
        RingLayer {
            ring: Arc::clone(self),
        }
    }

    /// Up to `limit` of the newest lines at `level` or above, oldest first.
    pub fn recent(&self, level: LogLevel, limit: usize) -> Vec<LogLine> {
        let ring = self.state.lock().expect("log ring lock");
        let mut newest: Vec<LogLine> = ring
            .lines
            .iter()
            .rev()
            .filter(|line| line.level >= level)
            .take(limit)
            .cloned()
            .collect();
        newest.reverse();
        newest
    }

    fn keep(&self, level: LogLevel, target: &str, message: String) {
        let mut ring = self.state.lock().expect("log ring lock");
        ring.next_seq += 1;
        let line = LogLine {
            seq: ring.next_seq,
            at_ms: now_ms(),
            level,
            target: target.to_string(),
            message,
        };
        if ring.lines.len() == self.capacity {
            ring.lines.pop_front();
        }
        ring.lines.push_back(line);
    }
}

/// Feeds a [`LogRing`]; see [`LogRing::layer`].
pub struct RingLayer {
    ring: Arc<LogRing>,
}

impl<S: tracing::Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        let level = level_of(*event.metadata().level());
        if level < self.ring.level {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        self.ring
            .keep(level, event.metadata().target(), text.finish());
    }
}

fn level_of(level: tracing::Level) -> LogLevel {
    match level {
        tracing::Level::TRACE => LogLevel::Trace,
        tracing::Level::DEBUG => LogLevel::Debug,
        tracing::Level::INFO => LogLevel::Info,
        tracing::Level::WARN => LogLevel::Warn,
        tracing::Level::ERROR => LogLevel::Error,
    }
}

/// An event's message followed by its fields as `key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        let mut text = self.message;
        if !self.fields.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&self.fields);
        }
        if text.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={value:?}", field.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn logged(ring: &Arc<LogRing>, log: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(ring.layer());
        tracing::subscriber::with_default(subscriber, log);
    }

    #[test]
    fn warnings_and_errors_are_kept_with_their_fields() {
        let ring = LogRing::warnings();
        logged(&ring, || {
            tracing::info!("started");
            tracing::warn!(peer = "abc", "cannot dial");
            tracing::error!("disk full");
        });
        let lines = ring.recent(LogLevel::Warn, 10);
        let shown: Vec<(LogLevel, &str)> = lines
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (LogLevel::Warn, "cannot dial peer=\"abc\""),
                (LogLevel::Error, "disk full")
            ]
        );
        let errors = ring.recent(LogLevel::Error, 10);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].seq, 2, "numbered in the order kept");
    }

    #[test]
    fn the_ring_keeps_only_the_newest_lines() {
        let ring = LogRing::new(LogLevel::Warn, 3);
        logged(&ring, || {
            for i in 0..10 {
                tracing::warn!("line {i}");
            }
        });
        let messages: Vec<String> = ring
            .recent(LogLevel::Warn, 100)
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(messages, ["line 7", "line 8", "line 9"]);
        assert_eq!(ring.recent(LogLevel::Warn, 1)[0].message, "line 9");
        let long = "x".repeat(10_000);
        logged(&ring, || tracing::error!("{long}"));
        let kept = &ring.recent(LogLevel::Error, 1)[0].message;
        assert!(kept.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    }
}
