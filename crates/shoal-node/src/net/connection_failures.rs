//! What the log says when a connection fails. A failed handshake most
//! likely means a peer with another cluster secret (or none), which the
//! operator must hear of; a refused or unreachable peer is routine, as
//! membership notices dead nodes on its own.
//!
//! So is an incoming connection whose dialer hangs up during the noise
//! handshake: a node that dials a peer it is already connecting to (at
//! another address, or from both ends at once) drops the spare. While 100
//! nodes formed a cluster on one machine, that happened about 10 times a
//! second, and each one warned of a missing secret. It cannot be a
//! mismatch: the noise handshake starts only once both sides read each
//! other's protocol choice, which a wrong or missing secret garbles. A
//! mismatch fails before it, on bytes that make no sense or on a hang-up
//! by the side that noticed first, and both of those still warn.

use libp2p::swarm::{DialError, ListenError};
use libp2p::{Multiaddr, PeerId};
use std::error::Error;

/// Logs a failed outgoing connection: a warning with a hint if the
/// handshake failed, else a debug line.
pub fn outgoing(peer: Option<PeerId>, error: &DialError, has_secret: bool) {
    if is_handshake_failure(&error.to_string()) {
        tracing::warn!(
            ?peer,
            error = causes(error),
            "{}",
            handshake_hint(has_secret)
        );
    } else {
        tracing::debug!(?peer, %error, "outgoing connection failed");
    }
}

/// Logs a failed incoming connection: a warning with a hint, except when
/// this node dialed itself at an address it did not know as its own (one a
/// join name resolved to, through a forwarded port), or the dialer hung up
/// during the noise handshake.
pub fn incoming(from: &Multiaddr, error: &ListenError, has_secret: bool) {
    if let ListenError::LocalPeerId { .. } = error {
        tracing::debug!(%from, "refused a connection from this node itself");
    } else if hung_up_in_noise(error) {
        tracing::debug!(%from, error = causes(error), "the dialer hung up during the handshake");
    } else {
        tracing::warn!(%from, error = causes(error), "{}", handshake_hint(has_secret));
    }
}

fn handshake_hint(has_secret: bool) -> &'static str {
    if has_secret {
        "connection refused during the private-network handshake: the peer does not have this cluster's secret"
    } else {
        "connection failed during the handshake: if the peer uses a cluster secret, start this node with the same --secret-file"
    }
}

/// An error with every cause under it, outermost first; a cause whose
/// text is empty, or that the error above it already spelled out, is not
/// repeated.
fn causes(error: &dyn Error) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut cause = Some(error);
    while let Some(error) = cause {
        let text = error.to_string();
        if !text.is_empty() && said.last().is_none_or(|above| !above.contains(&text)) {
            said.push(text);
        }
        cause = error.source();
    }
    said.join(": ")
}

/// Whether the other side closed or reset the connection during the noise
/// handshake, after both sides had agreed on it. Read from the text:
/// libp2p's upgrade errors spell out the stage (a failed protocol choice
/// reads "Multistream select failed", a failed noise handshake "Handshake
/// failed") and the I/O error they end in, but hand neither on as a type.
fn hung_up_in_noise(error: &dyn Error) -> bool {
    let text = causes(error).to_ascii_lowercase();
    let in_noise = text.contains("handshake failed") && !text.contains("multistream select");
    let hang_ups = [
        "connection reset",
        "connection aborted",
        "broken pipe",
        "unexpected end of file",
    ];
    let hung_up = hang_ups.iter().any(|hang_up| text.contains(hang_up)) || text.ends_with(": eof");
    in_noise && hung_up
}

/// Whether a connection error looks like a failed pnet/noise handshake
/// rather than, say, a refused TCP connection.
fn is_handshake_failure(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    if error.contains("connection refused") || error.contains("no route") {
        return false;
    }
    [
        "noise",
        "handshake",
        "decrypt",
        "multistream",
        "unexpected end",
        "protocol",
    ]
    .iter()
    .any(|needle| error.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// An upgrade error: its stage, then what it ended in.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}: {1}")]
    struct Upgrade(&'static str, String);

    fn failed(stage: &'static str, cause: impl ToString) -> ListenError {
        let upgrade = Upgrade(stage, cause.to_string());
        ListenError::Transport(libp2p::TransportError::Other(io::Error::other(upgrade)))
    }

    #[test]
    fn only_a_hang_up_in_the_noise_handshake_is_routine() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(hung_up_in_noise(&failed("Handshake failed", &reset)));
        assert!(hung_up_in_noise(&failed("Handshake failed", "eof")));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(hung_up_in_noise(&failed("Handshake failed", eof)));
        // What a wrong or missing secret looks like.
        let garbled = "Protocol error: Received an invalid message.";
        assert!(!hung_up_in_noise(&failed(
            "Multistream select failed",
            garbled
        )));
        assert!(!hung_up_in_noise(&failed(
            "Multistream select failed",
            &reset
        )));
        let too_long = "Maximum frame length exceeded";
        assert!(!hung_up_in_noise(&failed("Handshake failed", too_long)));
    }

    #[test]
    fn the_log_shows_every_cause_once() {
        let error = failed("Handshake failed", "connection reset by peer");
        assert_eq!(
            causes(&error),
            "Listen error: Failed to negotiate transport protocol(s): Handshake failed: connection reset by peer"
        );
    }
}
