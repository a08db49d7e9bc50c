//! What the log says when a connection fails. A failed handshake most
//! likely means a peer with another cluster secret (or none), which the
//! operator must hear of; a refused or unreachable peer is routine, as
//! membership notices dead nodes on its own.

use libp2p::swarm::{DialError, ListenError};
use libp2p::{Multiaddr, PeerId};

/// Logs a failed outgoing connection: a warning with a hint if the
/// handshake failed, else a debug line.
pub fn outgoing(peer: Option<PeerId>, error: &DialError, has_secret: bool) {
    if is_handshake_failure(&error.to_string()) {
        tracing::warn!(?peer, %error, "{}", handshake_hint(has_secret));
    } else {
        tracing::debug!(?peer, %error, "outgoing connection failed");
    }
}

/// Logs a failed incoming connection: a warning with a hint, except when
/// this node dialed itself at an address it did not know as its own (one a
/// join name resolved to, through a forwarded port).
pub fn incoming(from: &Multiaddr, error: &ListenError, has_secret: bool) {
    if let ListenError::LocalPeerId { .. } = error {
        tracing::debug!(%from, "refused a connection from this node itself");
    } else {
        tracing::warn!(%from, %error, "{}", handshake_hint(has_secret));
    }
}

fn handshake_hint(has_secret: bool) -> &'static str {
    if has_secret {
        "connection refused during the private-network handshake: the peer does not have this cluster's secret"
    } else {
        "connection failed during the handshake: if the peer uses a cluster secret, start this node with the same --secret-file"
    }
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
