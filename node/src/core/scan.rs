//! Key listing for Redis `SCAN`: one span of the token space at a time, read from the
//! replicas of the ring range holding it.
//!
//! A page is the union of the live keys (tombstones left out) of `R` replicas of the range,
//! complete through the smallest token every one of them listed to. A key whose write reached
//! `W` replicas before the listing began is on at least one of any `R` of them when
//! `R + W > N`, so a walk of the whole token space lists every key that existed throughout
//! the walk at least once (Redis's `SCAN` guarantee). The span is cut at the range's end, so
//! one page never needs two ranges' replicas; each replica reads a bounded number of stored
//! entries per page.

use std::collections::{BTreeSet, HashMap};

use super::calls::{CallError, CallId, Calls, Owner};
use super::{ClientId, Effect, InboundId, NodeCore};
use crate::limits::Limit;
use crate::proto::{ClientError, ClientResponse, KeyPage, PeerReply, PeerRequest};
use crate::reason::{Refusal, Unavailable};
use crate::store::Store;
use crate::version::{decode_record, live_values};

/// Most stored entries a replica reads for one page.
pub const MAX_PAGE: usize = 1000;
/// Fewest stored entries a replica reads for one page: a page cut inside one token's keys
/// goes back to the token before (see [`list_keys`]).
pub const MIN_PAGE: usize = 16;
/// Most listings a node coordinates at once; more are refused as overloaded.
const MAX_LISTINGS: usize = 1024;

/// (token, key) of each live key a replica listed, and the token through which the list is
/// complete.
type Listed = (Vec<(u64, Vec<u8>)>, u64);

/// A listing waiting for its replicas.
struct Listing {
    client: ClientId,
    from: u64,
    upto: u64,
    /// Replies the page needs.
    need: usize,
    /// Calls not answered yet.
    calls: Vec<CallId>,
    pages: Vec<Listed>,
    failures: Vec<String>,
}

/// The listings this node coordinates.
pub struct Scans {
    calls: Calls,
    listings: HashMap<u64, Listing>,
    by_call: HashMap<CallId, u64>,
    next: u64,
}

impl Default for Scans {
    fn default() -> Self {
        Self {
            calls: Calls::new(Owner::Scan),
            listings: HashMap::new(),
            by_call: HashMap::new(),
            next: 0,
        }
    }
}

impl NodeCore {
    /// A client's [`ClientRequest::Keys`](crate::proto::ClientRequest::Keys): ask every live
    /// replica of the range holding `from`, answer with the first `R` replies.
    pub(super) fn list_keys(&mut self, id: ClientId, from: u64, limit: u32, out: &mut Vec<Effect>) {
        let reply = |out: &mut Vec<Effect>, result| out.push(Effect::Reply { id, result });
        if self.scans.listings.len() >= MAX_LISTINGS {
            let e = ClientError::Overloaded {
                in_flight: self.scans.listings.len(),
            };
            return reply(out, Err(e));
        }
        let Some(idx) = self.ring().range_index(from) else {
            let e = ClientError::Unavailable(Unavailable::RingEmpty);
            return reply(out, Err(e));
        };
        let end = self
            .ring()
            .range_bounds(idx)
            .map_or(u64::MAX, |(_, end)| end);
        // A wrapping range is read in two spans: up to `u64::MAX`, then from 0.
        let upto = if from <= end { end } else { u64::MAX };
        let list = self.ring().preference_list_at(idx);
        let me = &self.shared.membership.me().name;
        let live: Vec<_> = list
            .iter()
            .filter(|n| *n == me || self.shared.membership.is_alive(n))
            .filter_map(|n| self.shared.addrs.get(n).copied())
            .collect();
        let need = self.shared.config.quorum.r.min(list.len()).max(1);
        if live.len() < need {
            let e = ClientError::QuorumFailed {
                op: "key listing".into(),
                needed: u8::try_from(need).unwrap_or(u8::MAX),
                replicas: u8::try_from(list.len()).unwrap_or(u8::MAX),
                ok: 0,
                detail: format!("{} replicas reachable", live.len()),
            };
            return reply(out, Err(e));
        }
        let scans = &mut self.scans;
        scans.next += 1;
        let listing_id = scans.next;
        let mut calls = Vec::with_capacity(live.len());
        for to in live {
            let call = scans.calls.next_id();
            scans.by_call.insert(call, listing_id);
            calls.push(call);
            let req = PeerRequest::Keys { from, upto, limit };
            out.push(Effect::Call { call, to, req });
        }
        let listing = Listing {
            client: id,
            from,
            upto,
            need,
            calls,
            pages: Vec::new(),
            failures: Vec::new(),
        };
        scans.listings.insert(listing_id, listing);
    }

    /// A replica's answer to a listing call.
    pub(super) fn on_keys_reply(
        &mut self,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let scans = &mut self.scans;
        let Some(listing_id) = scans.by_call.remove(&call) else {
            return;
        };
        let Some(l) = scans.listings.get_mut(&listing_id) else {
            return;
        };
        l.calls.retain(|c| *c != call);
        match reply {
            Ok(PeerReply::Keys { keys, through }) if (l.from..=l.upto).contains(&through) => {
                l.pages.push((keys, through));
            }
            Ok(PeerReply::Failed(e)) => l.failures.push(e.to_string()),
            Ok(other) => l.failures.push(format!("unexpected answer {other:?}")),
            Err(e) => l.failures.push(e.to_string()),
        }
        let result = if l.pages.len() >= l.need {
            let (keys, through) = merge(&l.pages, l.from);
            Ok(ClientResponse::Keys(KeyPage {
                keys,
                through,
                replicas: u8::try_from(l.pages.len()).unwrap_or(u8::MAX),
            }))
        } else if l.pages.len() + l.calls.len() < l.need {
            Err(ClientError::QuorumFailed {
                op: "key listing".into(),
                needed: u8::try_from(l.need).unwrap_or(u8::MAX),
                replicas: u8::try_from(l.pages.len() + l.failures.len()).unwrap_or(u8::MAX),
                ok: u8::try_from(l.pages.len()).unwrap_or(u8::MAX),
                detail: l.failures.join("; "),
            })
        } else {
            return;
        };
        if let Some(l) = scans.listings.remove(&listing_id) {
            for c in &l.calls {
                scans.by_call.remove(c);
            }
            out.push(Effect::Reply {
                id: l.client,
                result,
            });
        }
    }

    /// A coordinator asks this replica for its keys of `from..=upto`.
    pub(super) fn on_keys_request(
        &mut self,
        now_ms: u64,
        id: InboundId,
        (from, upto, limit): (u64, u64, u32),
        out: &mut Vec<Effect>,
    ) {
        if !(MIN_PAGE as u64..=MAX_PAGE as u64).contains(&u64::from(limit)) {
            self.limit_counts.hit(
                Limit::KeyPage,
                now_ms,
                format_args!(
                    "a key-listing page of {limit} keys asked; clamped to {MIN_PAGE} to {MAX_PAGE}"
                ),
            );
        }
        let reply = match list_keys(self.shared.store.as_ref(), from, upto, limit) {
            Ok((keys, through)) => PeerReply::Keys { keys, through },
            Err(e) => PeerReply::Failed(e),
        };
        // Under `Sync` nothing unsynced leaves a replica, keys included.
        let sync = self.shared.config.durability == crate::store::Durability::Sync;
        out.push(Effect::Respond { id, reply, sync });
    }
}

/// The live keys `store` holds with tokens in `from..=upto`, reading at most `limit` stored
/// entries (bounded to [`MIN_PAGE`]`..=`[`MAX_PAGE`]), and the token through which they are
/// complete.
///
/// A full read is cut before its last token, whose other keys may not have been read yet,
/// unless every entry read has that one token (more than `MIN_PAGE` keys on one 64-bit
/// token: the rest of that token's keys are then left out).
pub fn list_keys(store: &dyn Store, from: u64, upto: u64, limit: u32) -> Result<Listed, Refusal> {
    if from > upto {
        return Err(Refusal::Replica(format!(
            "empty token span {from}..={upto}"
        )));
    }
    let limit = usize::try_from(limit)
        .unwrap_or(MAX_PAGE)
        .clamp(MIN_PAGE, MAX_PAGE);
    // `Store::scan` reads `(start, end]`; `(u64::MAX, upto]` wraps to `0..=upto`.
    let mut entries = store
        .scan(from.wrapping_sub(1), upto, None, limit)
        .map_err(|e| Refusal::Storage(format!("cannot read keys: {e}")))?;
    let mut through = upto;
    if entries.len() >= limit {
        let first = entries.first().map_or(from, |e| e.token);
        let last = entries.last().map_or(upto, |e| e.token);
        if first == last {
            through = last;
        } else {
            entries.retain(|e| e.token != last);
            through = last - 1;
        }
    }
    let mut keys = Vec::with_capacity(entries.len());
    for e in entries {
        let record = decode_record(&e.value)
            .map_err(|err| Refusal::Replica(format!("stored record: {err}")))?;
        if !live_values(&record).is_empty() {
            keys.push((e.token, e.key));
        }
    }
    Ok((keys, through))
}

/// The union of replicas' listings: keys up to the smallest token all are complete through,
/// each once, in token order then key order.
fn merge(pages: &[Listed], from: u64) -> (Vec<Vec<u8>>, u64) {
    let through = pages.iter().map(|(_, t)| *t).min().unwrap_or(from);
    let keys: BTreeSet<&(u64, Vec<u8>)> = pages
        .iter()
        .flat_map(|(keys, _)| keys)
        .filter(|(t, _)| (from..=through).contains(t))
        .collect();
    (keys.into_iter().map(|(_, k)| k.clone()).collect(), through)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Timestamp;
    use crate::store::MemoryStore;
    use crate::version::{encode_record, Record, Sibling};

    fn put(store: &MemoryStore, token: u64, key: &str, value: Option<&str>) {
        let sibling = Sibling {
            value: value.map(|v| v.as_bytes().to_vec()),
            ts: Timestamp::default(),
            origin: "n1".into(),
        };
        let bytes = encode_record(&Record::new(sibling)).unwrap();
        store.put(token, key.as_bytes(), &bytes).unwrap();
    }

    fn names(keys: &[(u64, Vec<u8>)]) -> Vec<String> {
        keys.iter()
            .map(|(_, k)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn a_replica_lists_live_keys_of_its_span_and_cuts_a_full_page_at_a_token() {
        let store = MemoryStore::new();
        put(&store, 0, "zero", Some("v"));
        put(&store, 5, "dead", None);
        for i in 0..20u64 {
            put(&store, 10 + i, &format!("k{i:02}"), Some("v"));
        }
        put(&store, 29, "k19b", Some("v"));
        put(&store, u64::MAX, "max", Some("v"));
        let (keys, through) = list_keys(&store, 0, u64::MAX, 1000).unwrap();
        assert_eq!(through, u64::MAX);
        assert_eq!(keys.len(), 23, "the tombstone is left out");
        assert_eq!(names(&keys)[0], "zero");
        // 16 entries read (0, 5, 10..=23): token 23 may have more keys, so it is cut.
        let (keys, through) = list_keys(&store, 0, u64::MAX, 1).unwrap();
        assert_eq!(through, 22);
        assert_eq!(names(&keys).last().map(String::as_str), Some("k12"));
        assert_eq!(keys.len(), 1 + 13);
        // Resumed after it, the next page starts at token 23; both keys of token 29 together.
        let (keys, through) = list_keys(&store, 23, 40, 1000).unwrap();
        assert_eq!(through, 40);
        assert_eq!(names(&keys).first().map(String::as_str), Some("k13"));
        assert!(names(&keys).ends_with(&["k19".into(), "k19b".into()]));
        assert!(list_keys(&store, 5, 4, 10).is_err());
    }

    #[test]
    fn replicas_listings_merge_to_their_union_up_to_the_least_complete() {
        let a = (vec![(1, b"a".to_vec()), (3, b"c".to_vec())], 10);
        let b = (
            vec![(2, b"b".to_vec()), (3, b"c".to_vec()), (7, b"g".to_vec())],
            5,
        );
        let (keys, through) = merge(&[a, b], 0);
        assert_eq!(through, 5);
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    /// The calls `effects` make: (call, destination node index, request).
    fn calls_of(effects: Vec<Effect>) -> Vec<(CallId, usize, PeerRequest)> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Call { call, to, req } => {
                    let i = (0..3).find(|&i| super::super::table::tests::addr(i) == to)?;
                    Some((call, i, req))
                }
                _ => None,
            })
            .collect()
    }

    fn answer(effects: Vec<Effect>) -> Option<Result<ClientResponse, ClientError>> {
        effects.into_iter().find_map(|e| match e {
            Effect::Reply { result, .. } => Some(result),
            _ => None,
        })
    }

    #[test]
    fn a_listing_asks_every_replica_and_answers_the_union_of_the_first_r() {
        use super::super::Input;
        let (mut cores, stores) = super::super::table::tests::cluster(3);
        for store in &stores {
            put(store, 1, "everywhere", Some("v"));
            put(store, 3, "deleted", None);
        }
        put(&stores[1], 2, "only-on-n2", Some("v"));
        let keys = crate::proto::ClientRequest::Keys {
            from: 0,
            limit: 100,
        };
        let id = ClientId(7);
        let out = cores[0].handle(1, Input::Client { id, req: keys });
        let calls = calls_of(out);
        assert_eq!(calls.len(), 3, "every live replica is asked");
        // n2 and n1 answer first (R = 2); n3's late answer changes nothing.
        let mut order = calls.clone();
        order.sort_by_key(|(_, i, _)| usize::from(*i != 1));
        let mut answered = None;
        for (n, (call, i, req)) in order.into_iter().enumerate() {
            let out = cores[i].handle(
                1,
                Input::PeerRequest {
                    id: InboundId(n as u64),
                    from: "n1".into(),
                    req,
                },
            );
            let reply = out
                .into_iter()
                .find_map(|e| match e {
                    Effect::Respond { reply, .. } => Some(reply),
                    _ => None,
                })
                .expect("the replica answers");
            let got = answer(cores[0].handle(
                1,
                Input::PeerReply {
                    call,
                    reply: Ok(reply),
                },
            ));
            match (n, got) {
                (0 | 2, None) => {}
                (1, Some(result)) => answered = Some(result),
                (n, got) => panic!("answer {got:?} after reply {n}"),
            }
        }
        let Some(Ok(ClientResponse::Keys(page))) = answered else {
            panic!("{answered:?}");
        };
        assert_eq!(page.keys, [b"everywhere".to_vec(), b"only-on-n2".to_vec()]);
        assert_eq!(page.replicas, 2);
        assert!(page.through >= 3);

        // Two replicas unreachable: the listing cannot have R answers.
        let keys = crate::proto::ClientRequest::Keys {
            from: 0,
            limit: 100,
        };
        let calls = calls_of(cores[0].handle(1, Input::Client { id, req: keys }));
        let mut results = calls.into_iter().take(2).map(|(call, _, _)| {
            let reply = Err(CallError::Unreachable("down".into()));
            answer(cores[0].handle(1, Input::PeerReply { call, reply }))
        });
        assert!(results.next().flatten().is_none());
        let failed = results.next().flatten();
        assert!(
            matches!(
                failed,
                Some(Err(ClientError::QuorumFailed {
                    needed: 2,
                    ok: 0,
                    ..
                }))
            ),
            "{failed:?}"
        );
    }
}
