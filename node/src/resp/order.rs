//! Commands of one connection on the same key run in the order they were sent.
//!
//! Pipelined commands run at once, but Redis runs a connection's commands one after another,
//! so a `GET` pipelined after a `SET` of the same key sees that `SET`. A write waits for the
//! earlier in-flight commands of its connection that touch any of its keys; a read waits only
//! for the earlier writes, so pipelined reads of one key run together. Commands on other keys
//! do not wait. A barrier (`WAIT`, `SCAN`) waits for every earlier command.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture, FutureExt, Shared};
use tokio::sync::oneshot;

use super::codec::Reply;

type Done = Shared<BoxFuture<'static, ()>>;

/// One key's in-flight commands: the last write, and the reads sent after it.
#[derive(Default)]
struct Slot {
    write: Option<Done>,
    reads: Vec<Done>,
}

impl Slot {
    fn finished(&self) -> bool {
        self.write.as_ref().is_none_or(|d| d.peek().is_some())
            && self.reads.iter().all(|d| d.peek().is_some())
    }
}

/// Per connection: the in-flight commands of each key.
#[derive(Default)]
pub(super) struct KeyOrder {
    last: HashMap<Bytes, Slot>,
    /// The last barrier: every later command waits for it.
    barrier: Option<Done>,
}

/// Whether a command only reads its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// It reads: it waits for earlier writes only.
    Read,
    /// It writes: it waits for every earlier command on its keys.
    Write,
}

impl KeyOrder {
    /// `run`, started once every earlier command it must follow on one of `keys` finished.
    pub fn sequence(
        &mut self,
        mut keys: Vec<Bytes>,
        access: Access,
        run: BoxFuture<'static, Reply>,
    ) -> BoxFuture<'static, Reply> {
        let barrier = self.barrier.clone().filter(|d| d.peek().is_none());
        if keys.is_empty() {
            return match barrier {
                Some(b) => async move {
                    b.await;
                    run.await
                }
                .boxed(),
                None => run,
            };
        }
        keys.sort_unstable();
        keys.dedup();
        // Finished commands leave the map; it holds at most the keys of the commands in
        // flight (bounded by the pipeline depth) plus those finished since the last sweep.
        if self.last.len() >= SWEEP_AT {
            self.last.retain(|_, slot| !slot.finished());
        }
        let (finished, done) = done();
        let mut before: Vec<Done> = barrier.into_iter().collect();
        for key in keys {
            let slot = self.last.entry(key).or_default();
            before.extend(slot.write.iter().filter(|d| d.peek().is_none()).cloned());
            slot.reads.retain(|d| d.peek().is_none());
            match access {
                Access::Read => slot.reads.push(done.clone()),
                Access::Write => {
                    before.append(&mut slot.reads);
                    slot.write = Some(done.clone());
                }
            }
        }
        after(before, finished, run)
    }

    /// `run`, started once every earlier in-flight command finished; later commands wait
    /// for it.
    pub fn after_all(&mut self, run: BoxFuture<'static, Reply>) -> BoxFuture<'static, Reply> {
        let before: Vec<Done> = self
            .last
            .values()
            .flat_map(|s| s.write.iter().chain(&s.reads))
            .chain(&self.barrier)
            .filter(|d| d.peek().is_none())
            .cloned()
            .collect();
        let (finished, done) = done();
        self.barrier = Some(done);
        after(before, finished, run)
    }
}

/// A command's completion: the sender, and what later commands wait on. It completes when
/// the command finishes or is dropped (the connection closed).
fn done() -> (oneshot::Sender<()>, Done) {
    let (finished, done) = oneshot::channel::<()>();
    (finished, done.map(drop).boxed().shared())
}

fn after(
    before: Vec<Done>,
    finished: oneshot::Sender<()>,
    run: BoxFuture<'static, Reply>,
) -> BoxFuture<'static, Reply> {
    async move {
        join_all(before).await;
        let reply = run.await;
        let _ = finished.send(());
        reply
    }
    .boxed()
}

/// Entries kept before finished ones are swept out.
const SWEEP_AT: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// A command that logs `what` when it runs, once `gate` opens if there is one.
    fn logs(
        log: &Log,
        what: &'static str,
        gate: Option<oneshot::Receiver<()>>,
    ) -> BoxFuture<'static, Reply> {
        let log = log.clone();
        async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            log.lock().unwrap().push(what);
            Reply::OK
        }
        .boxed()
    }

    #[tokio::test]
    async fn a_later_command_on_the_same_key_waits_and_others_do_not() {
        let log = Log::default();
        let mut order = KeyOrder::default();
        let (release, gate) = oneshot::channel::<()>();
        let first = logs(&log, "set k", Some(gate));
        let note = |what| logs(&log, what, None);
        let first = tokio::spawn(order.sequence(vec![Bytes::from("k")], Access::Write, first));
        let same =
            tokio::spawn(order.sequence(vec![Bytes::from("k")], Access::Read, note("get k")));
        let other = order.sequence(vec![Bytes::from("j")], Access::Read, note("get j"));
        other.await;
        assert_eq!(*log.lock().unwrap(), ["get j"]);
        let _ = release.send(());
        let _ = first.await;
        let _ = same.await;
        assert_eq!(*log.lock().unwrap(), ["get j", "set k", "get k"]);
    }

    #[tokio::test]
    async fn reads_of_one_key_run_together_and_a_write_waits_for_them() {
        let mut order = KeyOrder::default();
        let (release, gate) = oneshot::channel::<()>();
        let log = Log::default();
        let blocked_read = logs(&log, "read 1", Some(gate));
        let note = |what| logs(&log, what, None);
        let first =
            tokio::spawn(order.sequence(vec![Bytes::from("k")], Access::Read, blocked_read));
        let second = order.sequence(vec![Bytes::from("k")], Access::Read, note("read 2"));
        let write =
            tokio::spawn(order.sequence(vec![Bytes::from("k")], Access::Write, note("write")));
        let barrier = tokio::spawn(order.after_all(note("barrier")));
        second.await;
        tokio::task::yield_now().await;
        assert_eq!(
            *log.lock().unwrap(),
            ["read 2"],
            "the second read did not wait"
        );
        let _ = release.send(());
        let _ = first.await;
        let _ = write.await;
        let _ = barrier.await;
        assert_eq!(
            *log.lock().unwrap(),
            ["read 2", "read 1", "write", "barrier"]
        );
    }

    #[tokio::test]
    async fn a_key_named_twice_in_one_write_does_not_wait_for_itself() {
        let mut order = KeyOrder::default();
        let k = Bytes::from("k");
        let run = order.sequence(
            vec![k.clone(), k],
            Access::Write,
            async { Reply::OK }.boxed(),
        );
        assert!(matches!(run.await, Reply::OK));
    }
}
