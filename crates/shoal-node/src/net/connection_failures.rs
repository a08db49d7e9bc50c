//! What the log says when a connection fails. A failed handshake most
//! likely means a peer with another cluster secret (or none), which the
//! operator must hear of; a refused or unreachable peer is routine, as
//! membership notices dead nodes on its own.
//!
//! So is an incoming connection whose dialer hangs up during the
//! handshake: a node that dials a peer it is already connecting to (at
//! another address, or from both ends at once) drops the spare. While 100
//! nodes formed a cluster on one machine, that happened about 10 times a
//! second, and each one warned of a missing secret. A real mismatch shows
//! on the listener as bytes it cannot read (an invalid message, a frame too
//! long), and on the dialer as a hang-up, which is why a dialer still
//! warns of one.

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
/// join name resolved to, through a forwarded port), or the dialer hung up.
pub fn incoming(from: &Multiaddr, error: &ListenError, has_secret: bool) {
    if let ListenError::LocalPeerId { .. } = error {
        tracing::debug!(%from, "refused a connection from this node itself");
    } else if hung_up(error) {
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

/// Whether the connection broke under the handshake (the other side
/// closed or reset it) rather than carrying something unreadable. Read from
/// the text: libp2p's upgrade errors spell out the I/O error they end in
/// but do not hand it on as a source.
fn hung_up(error: &dyn Error) -> bool {
    let text = causes(error).to_ascii_lowercase();
    let hang_ups = [
        "connection reset",
        "connection aborted",
        "broken pipe",
        "unexpected end of file",
    ];
    hang_ups.iter().any(|hang_up| text.contains(hang_up)) || text.ends_with(": eof")
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

    /// An error that says what it wraps, as libp2p's upgrade errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("handshake failed: {0}")]
    struct Wrapped(String);

    #[test]
    fn a_hang_up_under_the_handshake_is_told_from_an_unreadable_peer() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(hung_up(&Wrapped(reset.to_string())));
        assert!(hung_up(&Wrapped("eof".to_string())));
        assert!(hung_up(&io::Error::from(io::ErrorKind::UnexpectedEof)));
        assert!(!hung_up(&Wrapped(
            "Received an invalid message.".to_string()
        )));
        assert!(!hung_up(&Wrapped(
            "Maximum frame length exceeded".to_string()
        )));
    }

    #[test]
    fn the_log_shows_every_cause_once() {
        let reset = Wrapped("connection reset by peer".to_string());
        let error = ListenError::Transport(libp2p::TransportError::Other(io::Error::other(reset)));
        assert_eq!(
            causes(&error),
            "Listen error: Failed to negotiate transport protocol(s): handshake failed: connection reset by peer"
        );
        assert!(hung_up(&error));
    }
}
