//! Frames on the call stream between two nodes, and their encoding.
//!
//! Each frame is a big-endian `u32` length followed by that many bytes of
//! postcard. Arguments and results stay JSON inside the frame, so a node
//! passes them along without understanding them.
//!
//! A frame longer than [`MAX_FRAME_BYTES`] is never sent: the sender turns
//! it into a `payload_too_large` error for that call, and a receiver that
//! sees a longer length prefix closes the stream (the calls on it are
//! re-dispatched), so nothing is cut and dropped silently.

use crate::{CallError, CallId, NodeId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The libp2p protocol name of the call stream; the number is its
/// encoding's, so nodes whose frames differ fail the protocol negotiation
/// with a clear "unsupported protocol" instead of misreading frames (see
/// [`version`](crate::version) for when it changes).
pub const CALL_PROTOCOL: &str = "/shoal/call/1";

pub use crate::version::PROTOCOL_VERSION;

/// Largest encoded frame, length prefix excluded. Large enough for real
/// payloads, small enough that one frame cannot exhaust a node's memory.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Largest arguments or result of one call; leaves room for the envelope.
pub const MAX_PAYLOAD_BYTES: usize = MAX_FRAME_BYTES - 64 * 1024;

/// What a call resolved to: the JSON result, or why it failed.
pub type Outcome = Result<Bytes, CallError>;

/// A call as it travels to its executor. Its owner is the node that sent
/// it, except in [`StolenCall`], which names the owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRequest {
    /// The owner's number for this call.
    pub id: CallId,
    /// The registered function to run.
    pub function: String,
    /// Arguments, as JSON text.
    pub args: Bytes,
    /// Time left before the owner gives up, in milliseconds. Relative, so
    /// clocks of different machines need not agree.
    pub budget_ms: u64,
    /// The hash of the script that defines `function`, when the caller
    /// shipped one: an executor that lacks it fetches it from the owner.
    pub script: Option<String>,
    /// The durable job this call runs for, so the function can report
    /// progress to it.
    pub job: Option<JobRef>,
    /// The owner chose this node and no other (a job's requirements, or a
    /// call sent to one node): it runs here or fails, and is never stolen.
    pub pinned: bool,
}

/// A durable job's attempt: progress reports name it, and a stale attempt's
/// are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobRef {
    pub id: u64,
    pub attempt: u32,
}

/// A queued call handed from a busy node to an idle one; the result goes
/// straight to `owner`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StolenCall {
    pub owner: NodeId,
    pub request: CallRequest,
}

/// Everything one node says to another on a call stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Run this call and send its result back (sent by the call's owner).
    Call(CallRequest),
    /// The sender, the call's owner, no longer wants it: drop it if queued,
    /// stop it if running.
    Cancel { id: CallId },
    /// The result of a call owned by the receiver.
    Result { id: CallId, outcome: Outcome },
    /// A call owned by the receiver was stolen and now runs on `to`.
    Moved { id: CallId, to: NodeId },
    /// The sender is idle: give it up to `max` calls that have not started.
    Steal { max: u32 },
    /// Calls handed over by a steal; the receiver runs them.
    Stolen { calls: Vec<StolenCall> },
    /// A consensus message; its body is the node's own encoding, opaque here.
    RaftRequest { id: u64, body: Bytes },
    /// The answer to the `RaftRequest` with the same id.
    RaftResponse { id: u64, body: Bytes },
    /// The sender closes this stream because it was idle: not a failure.
    /// Nothing more comes on it; the next frame either way opens a new one.
    Bye,
}

/// Why bytes could not become a frame, or a frame could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge { len: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
}

impl Frame {
    /// Appends the length-prefixed encoding of this frame to `out`. A frame
    /// over the size limit is refused and `out` keeps its earlier content.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = out.len();
        let mut buf = std::mem::take(out);
        buf.extend_from_slice(&[0; 4]);
        let result = postcard::to_extend(self, buf);
        let (mut buf, outcome) = match result {
            Ok(buf) => {
                let len = buf.len() - start - 4;
                let outcome = if len > MAX_FRAME_BYTES {
                    Err(FrameError::TooLarge { len })
                } else {
                    Ok(len)
                };
                (buf, outcome)
            }
            // postcard writing into a Vec only fails on types it cannot
            // encode, none of which a Frame contains.
            Err(e) => (Vec::new(), Err(FrameError::Malformed(e))),
        };
        match outcome {
            Ok(len) => buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes()),
            Err(_) => buf.truncate(start),
        }
        *out = buf;
        outcome.map(|_| ())
    }

    /// Decodes one frame body (without its length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
        if body.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge { len: body.len() });
        }
        Ok(decode_exactly(body)?)
    }
}

/// Decodes `bytes` as one `T`, refusing bytes left over: a message that
/// says more than it should is as malformed as one that says less.
pub(crate) fn decode_exactly<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes(bytes)? {
        (value, []) => Ok(value),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// Reads the length prefix of a frame, rejecting lengths over the limit
/// before any body is read.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use proptest::prelude::*;

    fn roundtrip(frame: &Frame) -> Frame {
        let mut buf = Vec::new();
        frame.encode_into(&mut buf).unwrap();
        let len = frame_len(buf[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, buf.len() - 4);
        Frame::decode(&buf[4..]).unwrap()
    }

    #[test]
    fn every_frame_kind_roundtrips() {
        let call = CallRequest {
            id: CallId(7),
            function: "fib".into(),
            args: Bytes::from_static(b"{\"n\":10}"),
            budget_ms: 30_000,
            script: Some("ab12".into()),
            job: Some(JobRef { id: 9, attempt: 2 }),
            pinned: true,
        };
        let frames = [
            Frame::Call(call.clone()),
            Frame::Cancel { id: CallId(7) },
            Frame::Result {
                id: CallId(7),
                outcome: Ok(Bytes::from_static(b"55")),
            },
            Frame::Result {
                id: CallId(8),
                outcome: Err(CallError::new(ErrorCode::FunctionFailed, "boom")),
            },
            Frame::Moved {
                id: CallId(7),
                to: NodeId("x".into()),
            },
            Frame::Steal { max: 4 },
            Frame::RaftRequest {
                id: 3,
                body: Bytes::from_static(b"{}"),
            },
            Frame::RaftResponse {
                id: 3,
                body: Bytes::from_static(b"{}"),
            },
            Frame::Stolen {
                calls: vec![StolenCall {
                    owner: NodeId("12D3KooWabc".into()),
                    request: call,
                }],
            },
        ];
        for frame in &frames {
            assert_eq!(&roundtrip(frame), frame);
        }
    }

    #[test]
    fn oversized_frame_is_refused_and_buffer_untouched() {
        let mut buf = vec![1, 2, 3];
        let frame = Frame::Result {
            id: CallId(1),
            outcome: Ok(Bytes::from(vec![b'x'; MAX_FRAME_BYTES + 1])),
        };
        let err = frame.encode_into(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        assert_eq!(buf, vec![1, 2, 3]);
    }

    #[test]
    fn bytes_after_a_frame_make_it_malformed() {
        let mut buf = Vec::new();
        Frame::Steal { max: 4 }.encode_into(&mut buf).unwrap();
        buf.push(0);
        assert!(matches!(
            Frame::decode(&buf[4..]),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_reading() {
        let prefix = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert!(frame_len(prefix).is_err());
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn results_roundtrip(id in any::<u64>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let frame = Frame::Result { id: CallId(id), outcome: Ok(Bytes::from(body)) };
            prop_assert_eq!(roundtrip(&frame), frame);
        }
    }
}
