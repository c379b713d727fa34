//! Physical members of the ring.

/// A physical node as the ring sees it: a unique name and an optional failure zone.
///
/// Preference lists prefer distinct zones, so replicas of a key survive the loss of a whole
/// zone when there are at least N zones.
///
/// ```
/// use ringkv_ring::RingNode;
/// let node = RingNode::new("n1").in_zone("eu-west-1a");
/// assert_eq!(node.name, "n1");
/// assert_eq!(node.zone.as_deref(), Some("eu-west-1a"));
/// ```
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct RingNode {
    /// Unique name of the node; the ring is keyed by it.
    pub name: String,
    /// Failure zone (rack, availability zone). All nodes without a zone form one shared zone.
    pub zone: Option<String>,
}

impl RingNode {
    /// A node without a zone.
    pub fn new(name: impl Into<String>) -> RingNode {
        RingNode {
            name: name.into(),
            zone: None,
        }
    }

    /// The same node placed in `zone`.
    pub fn in_zone(self, zone: impl Into<String>) -> RingNode {
        RingNode {
            zone: Some(zone.into()),
            ..self
        }
    }
}
