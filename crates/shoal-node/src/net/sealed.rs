//! Membership datagrams as they cross the network: each UDP packet is
//! sealed with XChaCha20-Poly1305 under a key derived from the cluster's
//! name and secret, and names its sender inside the seal.
//!
//! ```text
//!   version (1) │ nonce (24, random) │ sealed: sender id len (1) │ sender id │ kind (1) │ body │ tag (16)
//! ```
//!
//! With a secret, only members can read or forge a packet, as `pnet`
//! guarantees for TCP. Without one the key comes from the cluster's name
//! alone: packets of another cluster, or damaged ones, are rejected, but
//! anyone who knows the name can read and forge them, just as anyone can
//! join a cluster that has no secret. A recorded packet can be replayed;
//! SWIM takes news only if it is newer than what a member knows, so a
//! replay repeats old news that is ignored.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libp2p::PeerId;
use sha2::Digest;

/// The first byte of every packet; a node drops packets of other versions.
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Bytes a packet adds to its body, at most (an Ed25519 peer id is 38).
pub const OVERHEAD_BYTES: usize = 1 + NONCE_BYTES + 1 + 64 + 1 + TAG_BYTES;

/// Seals and opens this cluster's membership datagrams.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

/// An opened packet: who sent it, what kind of message it is, its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub from: PeerId,
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Sealer {
    pub fn new(cluster: &str, secret: Option<&[u8; 32]>) -> Self {
        let mut key = sha2::Sha256::new();
        key.update(b"shoal membership datagrams v1\0");
        key.update(cluster.as_bytes());
        key.update([0]);
        if let Some(secret) = secret {
            key.update(secret);
        }
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.finalize()),
        }
    }

    /// The packet carrying `body` of `kind` from `from`.
    pub fn seal(&self, from: &PeerId, kind: u8, body: &[u8]) -> Vec<u8> {
        let id = from.to_bytes();
        let mut plain = Vec::with_capacity(id.len() + 2 + body.len());
        plain.push(u8::try_from(id.len()).expect("a peer id is short"));
        plain.extend_from_slice(&id);
        plain.push(kind);
        plain.extend_from_slice(body);
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &[VERSION],
                },
            )
            .expect("a packet in memory always seals");
        let mut packet = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        packet.push(VERSION);
        packet.extend_from_slice(&nonce);
        packet.extend_from_slice(&sealed);
        packet
    }

    /// The packet's content, or `None` if it is not an intact packet of
    /// this cluster and version.
    pub fn open(&self, packet: &[u8]) -> Option<Opened> {
        let (&version, rest) = packet.split_first()?;
        if version != VERSION || rest.len() < NONCE_BYTES + TAG_BYTES {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &[VERSION],
                },
            )
            .ok()?;
        let (&id_len, rest) = plain.split_first()?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + 1 {
            return None;
        }
        let from = PeerId::from_bytes(&rest[..id_len]).ok()?;
        Some(Opened {
            from,
            kind: rest[id_len],
            body: rest[id_len + 1..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_opens_only_with_the_same_cluster_and_secret() {
        let me = PeerId::random();
        let ours = Sealer::new("prod", Some(&[7; 32]));
        let packet = ours.seal(&me, 3, b"hello");
        assert!(packet.len() <= 5 + OVERHEAD_BYTES);
        let opened = ours.open(&packet).expect("opens");
        assert_eq!(
            opened,
            Opened {
                from: me,
                kind: 3,
                body: b"hello".to_vec()
            }
        );
        assert_eq!(Sealer::new("prod", Some(&[8; 32])).open(&packet), None);
        assert_eq!(Sealer::new("prod", None).open(&packet), None);
        assert_eq!(Sealer::new("staging", Some(&[7; 32])).open(&packet), None);
    }

    #[test]
    fn damaged_or_short_packets_are_rejected() {
        let sealer = Sealer::new("prod", None);
        let packet = sealer.seal(&PeerId::random(), 1, &[0; 100]);
        for at in [0, 1, 30, packet.len() - 1] {
            let mut damaged = packet.clone();
            damaged[at] ^= 1;
            assert_eq!(sealer.open(&damaged), None, "byte {at} flipped");
        }
        for len in [0, 1, 25, 40, packet.len() - 1] {
            assert_eq!(sealer.open(&packet[..len]), None, "cut to {len} bytes");
        }
    }

    #[test]
    fn two_seals_of_one_message_differ() {
        let sealer = Sealer::new("prod", None);
        let me = PeerId::random();
        assert_ne!(sealer.seal(&me, 1, b"x"), sealer.seal(&me, 1, b"x"));
    }
}
