//! What a connection may take before it is served: a place among the node's connections and
//! among those of its IP address, and a share of datagram processing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::limits::Limit;

/// Counts of open incoming connections, in total and per peer IP address.
#[derive(Clone, Default)]
pub(crate) struct Admission {
    inner: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Admission {
    /// A place for a connection from `ip`, or the limit that refuses it. The place is held
    /// from the handshake to the connection's end (until the returned guard drops).
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_address: usize,
    ) -> Result<Place, Limit> {
        let ip = ip.to_canonical();
        let mut open = lock(&self.inner);
        if open.total >= max_total {
            return Err(Limit::Connections);
        }
        let from_ip = open.per_address.entry(ip).or_default();
        if *from_ip >= max_per_address {
            return Err(Limit::ConnectionsPerAddress);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Place {
            admission: self.clone(),
            ip,
        })
    }

    /// Incoming connections open (or in their handshake).
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        lock(&self.inner).total
    }
}

/// One admitted connection's place; dropping it frees the place.
pub(crate) struct Place {
    admission: Admission,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = lock(&self.admission.inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_address.remove(&self.ip);
            }
        }
    }
}

fn lock(m: &Mutex<Open>) -> MutexGuard<'_, Open> {
    // The counts stay consistent under a panic elsewhere: every update is one statement.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A budget of datagrams per second for one connection: the count restarts each second,
/// beyond the budget datagrams are dropped unread by the node.
pub(crate) struct DatagramBudget {
    per_sec: u32,
    window_start: Instant,
    used: u32,
}

impl DatagramBudget {
    pub(crate) fn new(per_sec: u32, now: Instant) -> Self {
        DatagramBudget {
            per_sec,
            window_start: now,
            used: 0,
        }
    }

    /// Whether one more datagram arriving at `now` fits the budget.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.used = 0;
        }
        if self.used >= self.per_sec {
            return false;
        }
        self.used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_bounded_in_total_and_per_address_and_places_come_back() {
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let admission = Admission::default();
        let first = admission.admit(a, 3, 2).unwrap();
        let _second = admission.admit(a, 3, 2).unwrap();
        assert_eq!(
            admission.admit(a, 3, 2).err(),
            Some(Limit::ConnectionsPerAddress)
        );
        // An IPv4-mapped IPv6 address is the same peer.
        let mapped: IpAddr = std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into();
        assert_eq!(
            admission.admit(mapped, 3, 2).err(),
            Some(Limit::ConnectionsPerAddress)
        );
        let _third = admission.admit(b, 3, 2).unwrap();
        assert_eq!(admission.admit(b, 3, 2).err(), Some(Limit::Connections));
        assert_eq!(admission.open(), 3);
        drop(first);
        assert_eq!(admission.open(), 2);
        assert!(admission.admit(a, 3, 2).is_ok());
    }

    #[test]
    fn a_datagram_budget_refills_each_second() {
        let t0 = Instant::now();
        let mut budget = DatagramBudget::new(3, t0);
        let taken = (0..10).filter(|_| budget.take(t0)).count();
        assert_eq!(taken, 3);
        assert!(!budget.take(t0 + Duration::from_millis(999)));
        assert!(budget.take(t0 + Duration::from_secs(1)));
    }
}
