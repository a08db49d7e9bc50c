//! Telemetry events: what a node saw happen (peers joining and leaving,
//! leader changes, dead-lettered jobs, overload alerts), kept in a short
//! ring for late readers and broadcast to live ones (`GET /v1/events`).

use shoal_proto::api::{Event, EventKind};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

/// Events kept for readers that connect later.
const RECENT: usize = 256;
/// A live reader this far behind skips ahead rather than holding memory.
const CHANNEL: usize = 1024;

#[derive(Debug)]
pub struct Events {
    live: broadcast::Sender<Event>,
    recent: Mutex<VecDeque<Event>>,
    seq: AtomicU64,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            live: broadcast::channel(CHANNEL).0,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            seq: AtomicU64::new(1),
        }
    }
}

impl Events {
    /// Records an event, logs it, and hands it to live readers.
    pub fn emit(&self, kind: EventKind, node: Option<String>, message: String) {
        if kind.is_alert() {
            tracing::warn!(event = kind.as_str(), node, "{message}");
        } else {
            tracing::info!(event = kind.as_str(), node, "{message}");
        }
        let mut recent = self.recent.lock().expect("events lock");
        // Numbered under the lock so the ring and the stream agree on order.
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at_ms: crate::clock::now_ms(),
            kind,
            node,
            message,
        };
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        let _ = self.live.send(event);
    }

    /// Recent events with a sequence number above `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<Event> {
        let recent = self.recent.lock().expect("events lock");
        recent.iter().filter(|e| e.seq > after).cloned().collect()
    }

    /// The recent events, then every new one: subscribing and reading the
    /// ring happen under one lock, so nothing falls between them.
    pub fn subscribe(&self, after: u64) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let recent = self.recent.lock().expect("events lock");
        let receiver = self.live.subscribe();
        let backlog = recent.iter().filter(|e| e.seq > after).cloned().collect();
        (backlog, receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_events_in_order() {
        let events = Events::default();
        for i in 0..RECENT + 10 {
            events.emit(EventKind::NodeJoined, None, format!("{i}"));
        }
        let all = events.since(0);
        assert_eq!(all.len(), RECENT);
        assert_eq!(all[0].message, "10");
        assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        let tail = events.since(all[RECENT - 3].seq);
        assert_eq!(tail.len(), 2);
    }

    #[tokio::test]
    async fn a_subscriber_sees_the_backlog_then_live_events() {
        let events = Events::default();
        events.emit(EventKind::NodeJoined, Some("a".into()), "a joined".into());
        let (backlog, mut live) = events.subscribe(0);
        events.emit(EventKind::NodeLeft, Some("a".into()), "a left".into());
        assert_eq!(backlog.len(), 1);
        assert_eq!(live.recv().await.unwrap().kind, EventKind::NodeLeft);
    }
}
