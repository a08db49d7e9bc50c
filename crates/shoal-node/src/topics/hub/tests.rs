use super::*;
use serde_json::json;

fn message(epoch: u64, seq: u64) -> Arc<TopicMessage> {
    Arc::new(TopicMessage {
        topic: "t".into(),
        publisher: "p".into(),
        name: None,
        at_ms: 0,
        seq,
        epoch,
        value: json!(seq),
        retain: 0,
    })
}

fn seqs(ready: Vec<Arc<TopicMessage>>) -> Vec<(u64, u64)> {
    ready.iter().map(|m| (m.epoch, m.seq)).collect()
}

#[test]
fn a_restarted_publisher_starts_a_new_stream_and_its_old_stragglers_are_dropped() {
    let mut stream = PublisherStream::default();
    let now = Instant::now();
    assert_eq!(seqs(stream.accept(message(10, 1), now)), vec![(10, 1)]);
    assert_eq!(seqs(stream.accept(message(10, 2), now)), vec![(10, 2)]);
    assert_eq!(
        seqs(stream.accept(message(20, 1), now)),
        vec![(20, 1)],
        "counting from 1 again after a restart"
    );
    assert!(stream.accept(message(10, 3), now).is_empty(), "a straggler");
    assert_eq!(seqs(stream.accept(message(20, 2), now)), vec![(20, 2)]);
}
