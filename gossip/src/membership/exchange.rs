//! The membership's side of anti-entropy (`crate::sync`): when to sync and with whom, and
//! what to answer. Both the members and the status records of the differing digest buckets
//! go to the peer, so a node that missed a join or a status broadcast (whose transmissions
//! ran out before reaching it) catches up within a sync round or two.

use std::net::SocketAddr;
use std::time::Duration;

use foca::Member;
use rand::RngExt;

use super::{Membership, SYNC_REPLIES_PER_ROUND};
use crate::digest::BUCKETS;
use crate::error::GossipError;
use crate::identity::NodeId;
use crate::output::{GossipOutput, GossipTimer, TimerKind};
use crate::status::StatusUpdate;
use crate::sync::{SyncKind, SyncMessage};

impl Membership {
    pub(super) fn arm_sync(&mut self, out: &mut Vec<GossipOutput>) {
        out.push(GossipOutput::Schedule {
            after: self.config.sync_interval,
            timer: GossipTimer(TimerKind::Sync),
        });
    }

    /// One sync interval went by: renew the budgets, then sync with a peer whose digest
    /// differed, or with a random member when a push-pull is due.
    pub(super) fn sync_round(&mut self, out: &mut Vec<GossipOutput>) {
        if self.left {
            return;
        }
        self.sync.credit = true;
        self.sync.replies_left = SYNC_REPLIES_PER_ROUND;
        self.sync.awaiting = None;
        self.sync.since_push_pull = self
            .sync
            .since_push_pull
            .saturating_add(self.config.sync_interval);
        let partner = if self.sync.since_push_pull >= self.config.push_pull_interval {
            self.sync.since_push_pull = Duration::ZERO;
            self.random_live_member()
        } else {
            self.sync.pending.take().filter(|p| self.digest.holds(p))
        };
        if let Some(partner) = partner {
            self.request_sync(&partner, out);
        }
        self.arm_sync(out);
    }

    fn random_live_member(&mut self) -> Option<NodeId> {
        let live = self.foca.num_members();
        if live == 0 {
            return None;
        }
        let pick = self.rng.random_range(0..live);
        self.foca.iter_members().nth(pick).map(|m| m.id().clone())
    }

    /// A header carried a digest other than ours: sync with its sender, at most once per
    /// interval (later ones wait for the next round).
    pub(super) fn sync_if_differing(&mut self, out: &mut Vec<GossipOutput>) {
        let Some(peer) = self.shared.take_differing() else {
            return;
        };
        if self.left || !self.digest.holds(&peer) {
            return;
        }
        if self.sync.credit {
            self.request_sync(&peer, out);
        } else if self.sync.pending.is_none() {
            self.sync.pending = Some(peer);
        }
    }

    fn request_sync(&mut self, peer: &NodeId, out: &mut Vec<GossipOutput>) {
        self.sync.credit = false;
        self.sync.awaiting = Some(peer.addr);
        self.send_sync(SyncKind::Request, peer.addr, self.digest.wire(), &[], out);
    }

    /// Sends `kind` with `buckets` and as many `members` as `budget` bytes allow.
    fn send_sync_within(
        &mut self,
        kind: SyncKind,
        to: SocketAddr,
        buckets: Vec<u32>,
        members: &[Member<NodeId>],
        budget: usize,
        out: &mut Vec<GossipOutput>,
    ) {
        let datagrams = SyncMessage::encode(
            kind,
            self.foca.identity(),
            buckets,
            members,
            self.config.max_packet_size,
            budget,
        );
        for data in datagrams {
            out.push(GossipOutput::Send {
                to,
                data: data.into(),
            });
        }
    }

    /// Sends `kind` with `buckets` and as many `members` as the byte bounds allow.
    fn send_sync(
        &mut self,
        kind: SyncKind,
        to: SocketAddr,
        buckets: Vec<u32>,
        members: &[Member<NodeId>],
        out: &mut Vec<GossipOutput>,
    ) {
        let budget = self.config.sync_max_bytes;
        self.send_sync_within(kind, to, buckets, members, budget, out);
    }

    /// Answers a peer whose buckets `flagged` differ from ours: the status records of our
    /// members (and ourselves) there, in at most half of `sync_max_bytes`, then `kind` with
    /// `buckets` and the members there in what is left. Statuses go first: views that differ
    /// only in a status are the common case once membership settled, and a record is small.
    fn send_differing(
        &mut self,
        kind: SyncKind,
        to: SocketAddr,
        buckets: Vec<u32>,
        flagged: &[bool; BUCKETS],
        out: &mut Vec<GossipOutput>,
    ) {
        let members = self.members_in(flagged);
        let mut records: Vec<StatusUpdate> = Vec::new();
        if self.digest.me_in_buckets(flagged) {
            records.extend(self.own_record());
        }
        records.extend(
            members
                .iter()
                .filter_map(|m| self.board.record_named(&m.id().name)),
        );
        let datagrams = SyncMessage::encode_statuses(
            self.foca.identity(),
            &records,
            self.config.max_packet_size,
            self.config.sync_max_bytes / 2,
        );
        let mut budget = self.config.sync_max_bytes;
        for data in datagrams {
            budget = budget.saturating_sub(data.len());
            out.push(GossipOutput::Send {
                to,
                data: data.into(),
            });
        }
        self.send_sync_within(kind, to, buckets, &members, budget, out);
    }

    /// Our live members whose digest bucket is flagged, from a random starting point so
    /// that successive syncs cover what one reply's byte bound leaves out.
    fn members_in(&mut self, flagged: &[bool; BUCKETS]) -> Vec<Member<NodeId>> {
        let mut members: Vec<Member<NodeId>> = self
            .foca
            .iter_members()
            .filter(|m| self.digest.in_buckets(&m.id().addr, flagged))
            .cloned()
            .collect();
        if !members.is_empty() {
            let start = self.rng.random_range(0..members.len());
            members.rotate_left(start);
        }
        members
    }

    /// A membership sync datagram: answer a request, apply a reply and push back what the
    /// peer still lacks, or apply a push or status records.
    pub(super) fn handle_sync(&mut self, data: &[u8]) -> Result<Vec<GossipOutput>, GossipError> {
        if data.len() > self.config.max_packet_size {
            return Err(GossipError::DatagramTooBig {
                len: data.len(),
                max: self.config.max_packet_size,
            });
        }
        let message = SyncMessage::decode(data)?;
        let mut out = std::mem::take(&mut self.carried);
        if self.left || !self.digest.holds(&message.from) {
            // A stranger's sync, or one that overtook the datagram that made its sender a
            // member: nothing to trust it with; the next round repeats it.
            tracing::debug!(from = %message.from.addr, "ignoring a sync from a non-member");
            return Ok(out);
        }
        let from = message.from.addr;
        match message.kind {
            SyncKind::Request => {
                let flagged = self.digest.differing(&message.buckets);
                // Only answers count against the budget: a node of the previous build that
                // agrees with us asks every interval and needs no answer.
                if self.sync.replies_left > 0 && flagged.contains(&true) {
                    self.sync.replies_left -= 1;
                    let wire = self.digest.wire();
                    self.send_differing(SyncKind::Reply, from, wire, &flagged, &mut out);
                }
            }
            SyncKind::Reply => {
                self.apply_members(message.members, &mut out);
                if self.sync.awaiting == Some(from) {
                    self.sync.awaiting = None;
                    let flagged = self.digest.differing(&message.buckets);
                    if flagged.contains(&true) {
                        self.send_differing(SyncKind::Push, from, Vec::new(), &flagged, &mut out);
                    }
                }
            }
            SyncKind::Push => self.apply_members(message.members, &mut out),
            SyncKind::Status => self.apply_statuses(message.statuses),
        }
        self.drain_into(&mut out);
        Ok(out)
    }

    /// Feeds a peer's members to foca as if gossiped, passing on what is news.
    fn apply_members(&mut self, members: Vec<Member<NodeId>>, out: &mut Vec<GossipOutput>) {
        if members.is_empty() {
            return;
        }
        if let Err(error) = self
            .foca
            .apply_many(members.into_iter(), true, &mut self.runtime)
        {
            tracing::debug!(%error, "cannot apply synced members");
        }
        self.drain_into(out);
    }

    /// Takes a peer's status records as if gossiped, and passes on the ones that were news
    /// (other nodes may have missed them too). A record claiming a newer status for us
    /// makes us refute it when the outputs are drained.
    fn apply_statuses(&mut self, records: Vec<StatusUpdate>) {
        for record in records {
            let data = record.encode();
            if !self.board.receive_from_peer(record) {
                continue;
            }
            let queued = match data {
                Ok(data) => self.foca.add_broadcast(&data).map(drop),
                Err(error) => {
                    tracing::debug!(%error, "cannot encode a synced status record");
                    continue;
                }
            };
            if let Err(error) = queued {
                tracing::debug!(%error, "cannot pass on a synced status record");
            }
        }
    }

    /// Our own status record as peers hold it; `None` while we never set one.
    fn own_record(&self) -> Option<StatusUpdate> {
        (self.status_version > 0).then(|| StatusUpdate {
            id: self.foca.identity().clone(),
            version: self.status_version,
            status: self.status,
        })
    }
}
