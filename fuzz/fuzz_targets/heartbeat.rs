//! Gossiped heartbeats, as a gossipsub message body reaches
//! `Heartbeat::decode`.
//!
//! Proves that no message body makes the heartbeat decoder panic (a node
//! ignores what it cannot decode), and that every heartbeat it accepts
//! re-encodes with `Heartbeat::encode` into bytes that decode to an equal
//! heartbeat, so a relayed or re-published heartbeat means the same thing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::Heartbeat;

fuzz_target!(|body: &[u8]| {
    let Ok(heartbeat) = Heartbeat::decode(body) else {
        return;
    };
    let encoded = heartbeat.encode();
    assert!(encoded.len() <= body.len(), "re-encoding grew the message");
    let again = Heartbeat::decode(&encoded).expect("a re-encoded heartbeat decodes");
    assert_eq!(again, heartbeat);
});
