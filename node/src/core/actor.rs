//! The actor under which this node makes dots, and when it must change.
//!
//! A dot `(actor, counter)` must name one write forever. A node's counter for a key starts
//! from what its store holds for that key, so anything that makes the store forget a key this
//! node wrote (ownership transfer dropping a range, tombstone collection, a crash losing
//! unsynced writes under `Buffered`) could let the next write reuse a dot other replicas
//! already hold, and be taken as already seen. So after any such drop the node makes its next
//! dot under a new actor `name~epoch`. The "dropped" mark is written before the drop itself,
//! so a crash never keeps the drop and loses the mark.

use crate::store::{Store, StoreError};

const EPOCH_KEY: &str = "actor-epoch";
const DROPPED_KEY: &str = "actor-dropped";

/// The dot actor and its epoch.
pub struct Actor {
    base: String,
    epoch: u64,
    dropped: bool,
    name: String,
}

impl Actor {
    /// The actor as the store remembers it; `base` is the node name (plus the incarnation under
    /// `Buffered` durability, where a crash can forget dots).
    pub fn load(base: String, store: &dyn Store) -> Result<Self, StoreError> {
        // A damaged epoch is an error, not epoch 0: an older actor could reuse dots.
        let epoch = match store.meta_get(EPOCH_KEY)? {
            None => 0,
            Some(b) => u64::from_be_bytes(<[u8; 8]>::try_from(b.as_slice()).map_err(|_| {
                StoreError::Corrupt(format!(
                    "{EPOCH_KEY} holds {} bytes, not an 8-byte epoch",
                    b.len()
                ))
            })?),
        };
        let dropped = store.meta_get(DROPPED_KEY)?.is_some_and(|b| b == [1]);
        let mut actor = Self {
            name: String::new(),
            base,
            epoch,
            dropped,
        };
        actor.name = actor.compose();
        Ok(actor)
    }

    fn compose(&self) -> String {
        if self.epoch == 0 {
            self.base.clone()
        } else {
            format!("{}~{}", self.base, self.epoch)
        }
    }

    /// The actor of the next dot.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Call before deleting keys this node may have written: the next dot takes a new actor.
    pub fn before_drop(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        if !self.dropped {
            store.meta_put(DROPPED_KEY, &[1])?;
            self.dropped = true;
        }
        Ok(())
    }

    /// Call before making a dot: moves to a new epoch if keys were dropped since the last.
    pub fn before_dot(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        if self.dropped {
            store.meta_put(EPOCH_KEY, &(self.epoch + 1).to_be_bytes())?;
            store.meta_put(DROPPED_KEY, &[0])?;
            self.epoch += 1;
            self.dropped = false;
            self.name = self.compose();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_drop_moves_the_next_dot_to_a_new_actor_that_survives_a_restart() {
        let store = MemoryStore::new();
        let mut actor = Actor::load("n1".into(), &store).unwrap();
        actor.before_dot(&store).unwrap();
        assert_eq!(actor.name(), "n1", "no drop, no new actor");
        actor.before_drop(&store).unwrap();
        assert_eq!(
            actor.name(),
            "n1",
            "the actor changes at the next dot, not before"
        );
        actor.before_dot(&store).unwrap();
        assert_eq!(actor.name(), "n1~1");
        actor.before_dot(&store).unwrap();
        assert_eq!(actor.name(), "n1~1", "one epoch per drop episode");
        actor.before_drop(&store).unwrap();
        let reloaded = Actor::load("n1".into(), &store).unwrap();
        let mut reloaded = reloaded;
        reloaded.before_dot(&store).unwrap();
        assert_eq!(
            reloaded.name(),
            "n1~2",
            "a drop before a restart still counts"
        );
    }

    #[test]
    fn a_damaged_epoch_is_an_error_not_epoch_zero() {
        let store = MemoryStore::new();
        store.meta_put(EPOCH_KEY, &[0, 0, 0, 2]).unwrap();
        let err = Actor::load("n1".into(), &store).err().unwrap();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(EPOCH_KEY)),
            "{err}"
        );
    }
}
