//! What a node reads back from its data directory: records, the stored key and hint layouts,
//! and the metadata a core loads at start (actor epoch, saved ring members, range table).
//! Corrupted bytes must give an error (`Corrupt` for the layouts) or be served, never panic.

use std::sync::Arc;

use crate::Steps;
use ringkv::config::CoreConfig;
use ringkv::core::{load, ClientId, Input, NodeCore, Timer};
use ringkv::proto::ClientRequest;
use ringkv::store::fuzzing::{decode_hint, split_data_key};
use ringkv::store::{MemoryStore, Store, StoreError};
use ringkv::table::TABLE_META_KEY;
use ringkv::version::{decode_record, encode_record};
use ringkv_gossip::{GossipConfig, NodeId};

/// Metadata entries a core reads when it starts.
const META: [&str; 4] = ["actor-epoch", "actor-dropped", "ring-peers", TABLE_META_KEY];

/// Feeds one fuzz input; panics on a broken promise of the code under test.
pub fn run(data: &[u8]) {
    let store = Arc::new(MemoryStore::new());
    let key = b"k".to_vec();
    let token = ringkv_ring::token(&key);
    for (kind, body) in Steps::new(data).take(16) {
        match kind % 4 {
            0 => {
                // A stored record: decodes to one that survives its own encoding, or is
                // refused. (Not byte for byte: decoding drops entries with a zero counter.)
                if let Ok(record) = decode_record(body) {
                    let bytes = encode_record(&record).expect("a decoded record encodes");
                    let again = decode_record(&bytes).expect("an encoded record decodes");
                    assert_eq!(again, record);
                }
                let _ = store.put(token, &key, body);
                let _ = load(store.as_ref(), token, &key);
            }
            1 => {
                let (name, value) = body.split_first().map_or((META[0], body), |(i, v)| {
                    (META[usize::from(*i) % META.len()], v)
                });
                let _ = store.meta_put(name, value);
            }
            2 => {
                // A stored hint: key and value split at the first byte's position.
                let at = body.first().map_or(0, |&b| usize::from(b).min(body.len()));
                let (k, v) = body.split_at(at);
                match decode_hint(k, v) {
                    Ok(hint) => assert_eq!(hint.value.len() + 8, v.len()),
                    Err(e) => assert!(matches!(e, StoreError::Corrupt(_)), "{e}"),
                }
            }
            _ => match split_data_key(body) {
                Ok((t, k)) => assert_eq!(8 + k.len(), body.len(), "token {t}"),
                Err(e) => assert!(matches!(e, StoreError::Corrupt(_)), "{e}"),
            },
        }
    }
    // A node starting on that store refuses with an error or serves.
    let me = NodeId::new("n1", ([127, 0, 0, 1], 7001).into());
    let config = CoreConfig::default();
    let Ok(mut core) = NodeCore::new(me, vec![], config, GossipConfig::default(), store, 1) else {
        return;
    };
    let _ = core.start();
    let get = ClientRequest::Get {
        key: key.clone(),
        r: Some(1),
        wait_repair: false,
    };
    let _ = core.handle(
        1,
        Input::Client {
            id: ClientId(1),
            req: get,
        },
    );
    for (i, timer) in [
        Timer::Gc,
        Timer::Hints,
        Timer::Transfer,
        Timer::Table,
        Timer::Replication,
    ]
    .into_iter()
    .enumerate()
    {
        let _ = core.handle(1_000 * (i as u64 + 1), Input::Timer(timer));
    }
}
