//! Commands of one connection on the same key run in the order they were sent.
//!
//! Pipelined commands run at once, but Redis runs a connection's commands one after another,
//! so a `GET` pipelined after a `SET` of the same key sees that `SET`. A command here waits
//! for the earlier in-flight commands of its connection that touch any of its keys; commands
//! on other keys do not wait.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture, FutureExt, Shared};
use tokio::sync::oneshot;

use super::codec::Reply;

type Done = Shared<BoxFuture<'static, ()>>;

/// Per connection: the last in-flight command of each key.
#[derive(Default)]
pub(super) struct KeyOrder {
    last: HashMap<Bytes, Done>,
}

impl KeyOrder {
    /// `run`, started once every earlier command on one of `keys` finished.
    pub fn sequence(
        &mut self,
        keys: Vec<Bytes>,
        run: BoxFuture<'static, Reply>,
    ) -> BoxFuture<'static, Reply> {
        if keys.is_empty() {
            return run;
        }
        let before: Vec<Done> = keys
            .iter()
            .filter_map(|k| self.last.get(k).cloned())
            .collect();
        // Finished commands leave the map; it holds at most the keys of the commands in
        // flight (bounded by the pipeline depth) plus those finished since the last sweep.
        if self.last.len() >= SWEEP_AT {
            self.last.retain(|_, done| done.peek().is_none());
        }
        // Completes when the command finishes or is dropped (the connection closed).
        let (finished, done) = oneshot::channel::<()>();
        let done: Done = done.map(drop).boxed().shared();
        for key in keys {
            self.last.insert(key, done.clone());
        }
        async move {
            join_all(before).await;
            let reply = run.await;
            let _ = finished.send(());
            reply
        }
        .boxed()
    }
}

/// Entries kept before finished ones are swept out.
const SWEEP_AT: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn a_later_command_on_the_same_key_waits_and_others_do_not() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut order = KeyOrder::default();
        let (release, gate) = oneshot::channel::<()>();
        let first = {
            let log = log.clone();
            async move {
                let _ = gate.await;
                log.lock().unwrap().push("set k");
                Reply::OK
            }
            .boxed()
        };
        let note = |what: &'static str| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(what);
                Reply::OK
            }
            .boxed()
        };
        let first = tokio::spawn(order.sequence(vec![Bytes::from("k")], first));
        let same = tokio::spawn(order.sequence(vec![Bytes::from("k")], note("get k")));
        let other = order.sequence(vec![Bytes::from("j")], note("get j"));
        other.await;
        assert_eq!(*log.lock().unwrap(), ["get j"]);
        let _ = release.send(());
        let _ = first.await;
        let _ = same.await;
        assert_eq!(*log.lock().unwrap(), ["get j", "set k", "get k"]);
    }
}
