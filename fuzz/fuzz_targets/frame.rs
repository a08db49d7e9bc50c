//! Call-stream frames, as a peer's bytes reach `Frame::decode`.
//!
//! Proves that no byte string makes the frame decoder (or `frame_len`)
//! panic, and that every frame it accepts survives a round trip: it
//! re-encodes within the size limit, behind a length prefix that
//! `frame_len` accepts, into no more bytes than were read, and those bytes
//! decode to an equal frame. A peer can therefore close a stream with a bad
//! frame, never crash a node.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::Frame;
use shoal_proto::wire::frame_len;

fuzz_target!(|body: &[u8]| {
    // The reader sees the prefix before the body; any four bytes are either
    // a length or a refusal.
    if let Some(prefix) = body.first_chunk::<4>() {
        let _ = frame_len(*prefix);
    }

    let Ok(frame) = Frame::decode(body) else {
        return;
    };
    let mut encoded = Vec::new();
    frame
        .encode_into(&mut encoded)
        .expect("a frame that decoded re-encodes");
    let (prefix, reencoded) = encoded.split_first_chunk::<4>().expect("a length prefix");
    let len = frame_len(*prefix).expect("the re-encoded length is within the limit");
    assert_eq!(len, reencoded.len(), "the prefix counts the body");
    // postcard writes the shortest form, so re-encoding never grows a frame.
    assert!(
        len <= body.len(),
        "re-encoding grew {} bytes to {len}",
        body.len()
    );
    let again = Frame::decode(reencoded).expect("a re-encoded frame decodes");
    assert_eq!(again, frame);
});
