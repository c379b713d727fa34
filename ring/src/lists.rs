//! Preference lists of all ranges, packed so that neighbouring ranges share storage.
//!
//! Walking clockwise, the list of the next range is usually the current list minus its
//! first node plus one more node: the lists are sliding windows over one sequence of names.
//! Storing that sequence once, with each range's offset into it, costs about one `String`
//! per range instead of N plus a `Vec`, which is most of a ring build's time and memory.

use crate::node::RingNode;
use crate::placement::{Placement, Walker};

/// Every range's preference list as a window `names[offsets[i]..offsets[i] + len]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct PreferenceLists {
    names: Vec<String>,
    offsets: Vec<usize>,
    /// Length of every list: `min(N, members holding a vnode)`.
    len: usize,
}

impl PreferenceLists {
    /// Walks the preference list of every vnode position of `placement`.
    pub(crate) fn build(placement: &Placement, nodes: &[RingNode], replicas: usize) -> Self {
        let walker = Walker::new(placement, nodes, replicas);
        let positions = placement.owners.len();
        let len = walker.list_len();
        let mut packed: Vec<usize> = Vec::with_capacity(positions + len);
        let mut offsets = Vec::with_capacity(positions);
        let mut picked = Vec::with_capacity(len);
        for pos in 0..positions {
            walker.fill(pos, &mut picked);
            offsets.push(pack(&mut packed, &picked));
        }
        let names = packed.iter().map(|&n| nodes[n].name.clone()).collect();
        PreferenceLists {
            names,
            offsets,
            len,
        }
    }

    /// The list of range `index`; empty when out of bounds.
    pub(crate) fn get(&self, index: usize) -> &[String] {
        self.offsets
            .get(index)
            .and_then(|&start| self.names.get(start..start + self.len))
            .unwrap_or(&[])
    }
}

/// Appends `list` to the packed sequence, reusing the tail when the previous window
/// (always the last `list.len()` entries) already holds it; returns the list's offset.
fn pack(packed: &mut Vec<usize>, list: &[usize]) -> usize {
    let end = packed.len();
    let w = list.len();
    if w == 0 {
        return end;
    }
    if end >= w && packed[end - w..] == *list {
        return end - w;
    }
    if end >= w - 1 && packed[end + 1 - w..] == list[..w - 1] {
        packed.push(list[w - 1]);
        return end + 1 - w;
    }
    packed.extend_from_slice(list);
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::place;
    use proptest::prelude::*;

    #[test]
    fn pack_reuses_the_previous_window() {
        let mut packed = Vec::new();
        assert_eq!(pack(&mut packed, &[1, 2, 3]), 0);
        assert_eq!(pack(&mut packed, &[1, 2, 3]), 0);
        assert_eq!(pack(&mut packed, &[2, 3, 4]), 1);
        assert_eq!(pack(&mut packed, &[5, 3, 4]), 4);
        assert_eq!(packed, [1, 2, 3, 4, 5, 3, 4]);
    }

    proptest! {
        #[test]
        fn packed_lists_equal_the_walked_lists(
            n in 1usize..12,
            zones in 1usize..4,
            vnodes in 1u32..24,
            replicas in 1usize..5,
        ) {
            let mut nodes: Vec<RingNode> = (0..n)
                .map(|i| RingNode::new(format!("n{i}")).in_zone(format!("z{}", i % zones)))
                .collect();
            nodes.sort();
            let placement = place(&nodes, vnodes);
            let lists = PreferenceLists::build(&placement, &nodes, replicas);
            let walker = Walker::new(&placement, &nodes, replicas);
            let mut picked = Vec::new();
            for pos in 0..placement.owners.len() {
                walker.fill(pos, &mut picked);
                let names: Vec<&String> = picked.iter().map(|&i| &nodes[i].name).collect();
                let got: Vec<&String> = lists.get(pos).iter().collect();
                prop_assert_eq!(got, names);
            }
            prop_assert!(lists.get(placement.owners.len()).is_empty());
        }
    }
}
