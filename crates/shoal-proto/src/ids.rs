//! Identifiers. A call is named by its owner (the node that made it) and a
//! counter local to that owner, so no coordination is needed to mint one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's identity: the base58 text of its libp2p peer id.
///
/// Kept as text so this crate does not depend on libp2p.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl NodeId {
    /// The last characters of the id: enough to tell nodes apart in a table.
    pub fn short(&self) -> &str {
        let start = self.0.len().saturating_sub(6);
        // Ids from the wire may hold any text: start on a character.
        let start = (start..=self.0.len())
            .find(|&i| self.0.is_char_boundary(i))
            .unwrap_or(self.0.len());
        &self.0[start..]
    }
}

/// A call's number, unique among the calls of one owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A call's cluster-wide name: who owns it and its number there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallKey {
    pub owner: NodeId,
    pub id: CallId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_start_on_a_character() {
        assert_eq!(NodeId("12D3KooWabcdef".into()).short(), "abcdef");
        assert_eq!(NodeId("éééa".into()).short(), "ééa");
        assert_eq!(NodeId("ab".into()).short(), "ab");
    }
}
