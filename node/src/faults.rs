//! Fault injection for test clusters: a node started with it (`ringctl serve
//! --fault-injection`) accepts an admin request that makes its transport drop traffic to and
//! from named peers, shifts the wall clock it feeds its core (and so its HLC), and delays its
//! store's syncs. `ringctl chaos` uses it to partition nodes, skew clocks and slow disks
//! without root. Never enable it on a production node: any client holding a certificate of
//! the cluster could cut the node off.
//!
//! The state lives here, shared by the shell (clock, membership), the transport (every
//! datagram, request and response, on send and on receipt, so each direction of a cut is
//! exact) and the committer (syncs). A node started without fault injection holds
//! [`Faults::off`], whose hooks do nothing and whose admin request is refused with
//! [`FaultError::Disabled`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest clock offset a node accepts, either way (one hour).
pub const MAX_CLOCK_OFFSET_MS: i64 = 3_600_000;
/// Longest delay a node adds to each store sync.
pub const MAX_SYNC_DELAY_MS: u64 = 10_000;
/// Longest a request from a cut-off peer is held unanswered before its stream is reset (the
/// peer's own call timeout ends it first; this bounds what the node keeps).
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);
/// Requests from cut-off peers held at once; beyond, they are reset at once.
pub const MAX_HELD: usize = 4096;

/// An admin request about fault injection, answered by the node's shell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultRequest {
    /// Replace the node's faults with these (an empty plan heals it).
    Set(FaultPlan),
    /// Report the node's faults.
    Get,
}

/// The faults one node applies. Peers are named as in the ring (`n2`) or by address
/// (`127.0.0.1:7002`); a name the node does not know yet is remembered and cut as soon as the
/// node learns that member's address, so a cut can be set on a node that has just (re)started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Peers whose datagrams, requests and responses to this node are dropped on receipt.
    pub drop_from: BTreeSet<String>,
    /// Peers this node's datagrams, requests and responses to are dropped before sending.
    pub drop_to: BTreeSet<String>,
    /// Milliseconds added to the wall clock the node feeds its core (negative: behind).
    pub clock_offset_ms: i64,
    /// Milliseconds every store sync is delayed by.
    pub sync_delay_ms: u64,
}

/// Most peers one direction of a plan may name.
pub const MAX_PEERS: usize = 256;
/// Longest peer name or address accepted in a plan.
pub const MAX_PEER_LEN: usize = 256;

impl FaultPlan {
    /// Whether the plan injects nothing.
    pub fn is_healed(&self) -> bool {
        *self == FaultPlan::default()
    }

    /// Checks the plan's bounds and resolves its peers: addresses as given, names among
    /// `members` (name, address); names not among them wait for [`Faults::learn`]. Naming this
    /// node itself (`me` at `my_addr`) is refused.
    pub fn resolve(
        &self,
        me: &str,
        my_addr: SocketAddr,
        members: &[(String, SocketAddr)],
    ) -> Result<ActiveFaults, FaultError> {
        if self.clock_offset_ms.unsigned_abs() > MAX_CLOCK_OFFSET_MS.unsigned_abs() {
            return Err(FaultError::ClockOffset {
                ms: self.clock_offset_ms,
                max: MAX_CLOCK_OFFSET_MS,
            });
        }
        if self.sync_delay_ms > MAX_SYNC_DELAY_MS {
            return Err(FaultError::SyncDelay {
                ms: self.sync_delay_ms,
                max: MAX_SYNC_DELAY_MS,
            });
        }
        let addrs = |peers: &BTreeSet<String>| {
            if peers.len() > MAX_PEERS {
                return Err(FaultError::TooManyPeers {
                    count: peers.len(),
                    max: MAX_PEERS,
                });
            }
            let mut out = BTreeSet::new();
            for peer in peers {
                if peer.is_empty() || peer.len() > MAX_PEER_LEN {
                    return Err(FaultError::BadPeer(
                        peer.chars().take(MAX_PEER_LEN).collect(),
                    ));
                }
                if let Ok(addr) = peer.parse::<SocketAddr>() {
                    if addr == my_addr {
                        return Err(FaultError::SelfNamed(peer.clone()));
                    }
                    out.insert(addr);
                    continue;
                }
                if peer == me {
                    return Err(FaultError::SelfNamed(peer.clone()));
                }
                out.extend(members.iter().filter(|(n, _)| n == peer).map(|(_, a)| *a));
            }
            Ok(out)
        };
        Ok(ActiveFaults {
            drop_from: addrs(&self.drop_from)?,
            drop_to: addrs(&self.drop_to)?,
            clock_offset_ms: self.clock_offset_ms,
            sync_delay: Duration::from_millis(self.sync_delay_ms),
            plan: self.clone(),
        })
    }
}

/// Why a fault request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FaultError {
    /// The node was started without fault injection.
    #[error(
        "fault injection is off on node {0}; only a test node started with \
         `ringctl serve --fault-injection` accepts fault requests"
    )]
    Disabled(String),
    /// A peer entry is empty or too long to be a name or an address.
    #[error("{0:?} is not a peer name or address")]
    BadPeer(String),
    /// A direction names too many peers.
    #[error("{count} peers named in one direction; at most {max}")]
    TooManyPeers {
        /// Peers named.
        count: usize,
        /// The most accepted.
        max: usize,
    },
    /// The node itself was named as a peer.
    #[error("{0:?} is this node itself, not a peer")]
    SelfNamed(String),
    /// The clock offset is out of bounds.
    #[error("clock offset of {ms} ms is outside ±{max} ms")]
    ClockOffset {
        /// The offset asked.
        ms: i64,
        /// The largest accepted either way.
        max: i64,
    },
    /// The sync delay is out of bounds.
    #[error("sync delay of {ms} ms is over the limit of {max} ms")]
    SyncDelay {
        /// The delay asked.
        ms: u64,
        /// The largest accepted.
        max: u64,
    },
}

/// A checked plan with its peers resolved to addresses (as far as known).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActiveFaults {
    drop_from: BTreeSet<SocketAddr>,
    drop_to: BTreeSet<SocketAddr>,
    clock_offset_ms: i64,
    sync_delay: Duration,
    plan: FaultPlan,
}

/// A node's fault state, shared by its shell, transport and committer. Cheap to clone; the
/// default ([`Faults::off`]) injects nothing and refuses to be set.
#[derive(Clone, Debug, Default)]
pub struct Faults(Option<Arc<Shared>>);

#[derive(Debug, Default)]
struct Shared {
    active: RwLock<ActiveFaults>,
    /// Requests from cut-off peers held unanswered now.
    held: AtomicUsize,
}

impl Faults {
    /// Fault injection off: every hook is a no-op.
    pub fn off() -> Self {
        Faults(None)
    }

    /// Fault injection on, with nothing injected yet.
    pub fn on() -> Self {
        Faults(Some(Arc::default()))
    }

    /// Whether the node accepts fault requests.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Installs `active`; refused when fault injection is off (`me` names the node).
    pub fn set(&self, me: &str, active: ActiveFaults) -> Result<FaultPlan, FaultError> {
        let Some(state) = &self.0 else {
            return Err(FaultError::Disabled(me.to_string()));
        };
        let plan = active.plan.clone();
        *state.active.write().unwrap_or_else(|p| p.into_inner()) = active;
        Ok(plan)
    }

    /// The plan in force; refused when fault injection is off.
    pub fn plan(&self, me: &str) -> Result<FaultPlan, FaultError> {
        self.read(|a| a.plan.clone())
            .ok_or_else(|| FaultError::Disabled(me.to_string()))
    }

    fn read<T>(&self, f: impl FnOnce(&ActiveFaults) -> T) -> Option<T> {
        let state = self.0.as_ref()?;
        Some(f(&state.active.read().unwrap_or_else(|p| p.into_inner())))
    }

    /// Hook of the shell's membership events: a member named in the plan (by name) is now
    /// known at `addr`, so its traffic is cut from now on.
    pub fn learn(&self, name: &str, addr: SocketAddr) {
        let Some(state) = &self.0 else { return };
        let mut active = state.active.write().unwrap_or_else(|p| p.into_inner());
        if active.plan.drop_from.contains(name) && active.drop_from.insert(addr) {
            tracing::warn!(peer = name, %addr, "fault injection: now dropping traffic from it");
        }
        if active.plan.drop_to.contains(name) && active.drop_to.insert(addr) {
            tracing::warn!(peer = name, %addr, "fault injection: now dropping traffic to it");
        }
    }

    /// Keeps `stream` (a request or response stream of a cut-off peer) open and unanswered
    /// for up to [`HOLD_LIMIT`], [`MAX_HELD`] at once, so the peer waits as it would for a
    /// lost packet instead of seeing its stream reset at once.
    pub async fn hold<T: Send>(&self, stream: T) {
        let Some(shared) = &self.0 else { return };
        if shared.held.fetch_add(1, Ordering::AcqRel) < MAX_HELD {
            tokio::time::sleep(HOLD_LIMIT).await;
        }
        drop(stream);
        shared.held.fetch_sub(1, Ordering::AcqRel);
    }

    /// Hook of the transport's outgoing calls before the request is sent: never returns
    /// while traffic to `to` is cut, so the caller's timeout ends the call as a real
    /// partition would.
    pub async fn hold_if_cut_to(&self, to: SocketAddr) {
        if self.cuts_to(to) {
            std::future::pending::<()>().await;
        }
    }

    /// Hook of the transport's outgoing calls when the response arrives: never returns while
    /// traffic from `to` is cut (the request was delivered; its answer is lost).
    pub async fn hold_if_cut_from(&self, to: SocketAddr) {
        if self.cuts_from(to) {
            std::future::pending::<()>().await;
        }
    }

    /// Whether datagrams and calls to `to` are dropped.
    pub fn cuts_to(&self, to: SocketAddr) -> bool {
        self.read(|a| a.drop_to.contains(&to)).unwrap_or(false)
    }

    /// Whether datagrams and calls from `from` are dropped.
    pub fn cuts_from(&self, from: SocketAddr) -> bool {
        self.read(|a| a.drop_from.contains(&from)).unwrap_or(false)
    }

    /// Hook where the shell reads the wall clock for its core: `wall_ms` shifted by the
    /// injected offset.
    pub fn clock(&self, wall_ms: u64) -> u64 {
        match self.read(|a| a.clock_offset_ms) {
            Some(offset) if offset != 0 => wall_ms.saturating_add_signed(offset),
            _ => wall_ms,
        }
    }

    /// Hook of the store's sync (on a blocking thread): sleeps the injected delay first.
    pub fn delay_sync(&self) {
        if let Some(delay) = self.read(|a| a.sync_delay).filter(|d| !d.is_zero()) {
            std::thread::sleep(delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "127.0.0.1:7001";

    fn me() -> SocketAddr {
        ME.parse().unwrap()
    }

    fn members() -> Vec<(String, SocketAddr)> {
        vec![
            ("n2".into(), "127.0.0.1:7002".parse().unwrap()),
            ("n3".into(), "127.0.0.1:7003".parse().unwrap()),
        ]
    }

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_plan_resolves_peers_to_addresses_and_the_hooks_apply_it() {
        let plan = FaultPlan {
            drop_from: names(&["n2"]),
            drop_to: names(&["n3"]),
            clock_offset_ms: -5_000,
            sync_delay_ms: 1,
        };
        let faults = Faults::on();
        faults
            .set("n1", plan.resolve("n1", me(), &members()).unwrap())
            .unwrap();
        let (n2, n3) = (members()[0].1, members()[1].1);
        assert!(faults.cuts_from(n2) && !faults.cuts_from(n3));
        assert!(faults.cuts_to(n3) && !faults.cuts_to(n2));
        assert_eq!(faults.clock(10_000), 5_000);
        assert_eq!(faults.clock(1_000), 0, "saturates at zero");
        assert_eq!(faults.plan("n1").unwrap(), plan);
        let healed = FaultPlan::default();
        assert!(healed.is_healed());
        faults
            .set("n1", healed.resolve("n1", me(), &members()).unwrap())
            .unwrap();
        assert!(!faults.cuts_from(n2) && !faults.cuts_to(n3));
        assert_eq!(faults.clock(10_000), 10_000);
    }

    #[test]
    fn peers_given_by_address_apply_at_once_and_unknown_names_once_learned() {
        let n4: SocketAddr = "127.0.0.1:7004".parse().unwrap();
        let n5: SocketAddr = "127.0.0.1:7005".parse().unwrap();
        let plan = FaultPlan {
            drop_from: names(&["127.0.0.1:7004", "n5"]),
            drop_to: names(&["n5"]),
            ..FaultPlan::default()
        };
        let faults = Faults::on();
        faults
            .set("n1", plan.resolve("n1", me(), &members()).unwrap())
            .unwrap();
        assert!(faults.cuts_from(n4) && !faults.cuts_to(n4));
        assert!(
            !faults.cuts_from(n5) && !faults.cuts_to(n5),
            "n5 not known yet"
        );
        faults.learn("n2", members()[0].1);
        assert!(!faults.cuts_from(members()[0].1), "n2 is not in the plan");
        faults.learn("n5", n5);
        assert!(faults.cuts_from(n5) && faults.cuts_to(n5));
        assert_eq!(faults.plan("n1").unwrap(), plan);
        Faults::off().learn("n5", n5);
    }

    #[test]
    fn a_node_without_fault_injection_refuses_and_injects_nothing() {
        let faults = Faults::off();
        let active = FaultPlan::default()
            .resolve("n1", me(), &members())
            .unwrap();
        assert!(matches!(
            faults.set("n1", active),
            Err(FaultError::Disabled(n)) if n == "n1"
        ));
        assert!(matches!(faults.plan("n1"), Err(FaultError::Disabled(_))));
        assert_eq!(faults.clock(42), 42);
        assert!(!faults.cuts_to(members()[0].1));
    }

    #[test]
    fn bounds_and_peers_are_checked() {
        let resolve = |p: FaultPlan| p.resolve("n1", me(), &members());
        for own in ["n1", ME] {
            assert_eq!(
                resolve(FaultPlan {
                    drop_from: names(&[own]),
                    ..FaultPlan::default()
                }),
                Err(FaultError::SelfNamed(own.into()))
            );
        }
        for bad in [String::new(), "x".repeat(MAX_PEER_LEN + 1)] {
            assert!(matches!(
                resolve(FaultPlan {
                    drop_to: [bad].into(),
                    ..FaultPlan::default()
                }),
                Err(FaultError::BadPeer(_))
            ));
        }
        let many: BTreeSet<String> = (0..=MAX_PEERS).map(|i| format!("p{i}")).collect();
        assert!(matches!(
            resolve(FaultPlan {
                drop_to: many,
                ..FaultPlan::default()
            }),
            Err(FaultError::TooManyPeers { .. })
        ));
        for ms in [MAX_CLOCK_OFFSET_MS + 1, -MAX_CLOCK_OFFSET_MS - 1, i64::MIN] {
            assert!(matches!(
                resolve(FaultPlan {
                    clock_offset_ms: ms,
                    ..FaultPlan::default()
                }),
                Err(FaultError::ClockOffset { .. })
            ));
        }
        assert!(resolve(FaultPlan {
            clock_offset_ms: -MAX_CLOCK_OFFSET_MS,
            sync_delay_ms: MAX_SYNC_DELAY_MS,
            ..FaultPlan::default()
        })
        .is_ok());
        assert!(matches!(
            resolve(FaultPlan {
                sync_delay_ms: MAX_SYNC_DELAY_MS + 1,
                ..FaultPlan::default()
            }),
            Err(FaultError::SyncDelay { .. })
        ));
    }
}
