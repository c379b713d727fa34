//! Broken and hostile input: every case is an error, never a panic, and ends the exchange.

use super::*;

/// Range (0, 16] at depth 2 (leaves of 4 tokens); the initiator holds "a" (token 3) and
/// "b" (token 9), the responder only "a": leaf 2 differs.
fn pair() -> (Replica, Replica) {
    let a = (3u64, b"a".to_vec(), h(1));
    let b = (9u64, b"b".to_vec(), h(2));
    (
        Replica::new(0, 16, 2, &[a.clone(), b]),
        Replica::new(0, 16, 2, &[a]),
    )
}

fn small() -> ExchangeLimits {
    ExchangeLimits {
        max_hashes: 2,
        max_items: 2,
        max_item_bytes: 100,
        max_leaf_items: 3,
    }
}

/// Both sides driven up to the initiator's first `Items`, which is returned undelivered.
fn up_to_items() -> (Replica, Replica, Exchange, Exchange, ExchangeMsg) {
    let (mut i, mut r) = pair();
    let mut ei = Exchange::initiate(&mut i.tree, small()).unwrap();
    let mut er = Exchange::respond(&r.tree, small()).unwrap();
    let mut to_r = settle(&mut ei, &mut i).unwrap();
    loop {
        if let Some(pos) = to_r.iter().position(|m| m.kind() == "Items") {
            let items = to_r.swap_remove(pos);
            return (i, r, ei, er, items);
        }
        let mut to_i = Vec::new();
        for m in to_r {
            er.handle(&mut r.tree, m).unwrap();
            to_i.extend(settle(&mut er, &mut r).unwrap());
        }
        to_r = Vec::new();
        for m in to_i {
            ei.handle(&mut i.tree, m).unwrap();
            to_r.extend(settle(&mut ei, &mut i).unwrap());
        }
    }
}

/// A responder that took an `Open` whose root differs: it expects level 1 from 0.
fn opened_responder() -> (Replica, Exchange) {
    let (_, mut r) = pair();
    let mut er = Exchange::respond(&r.tree, small()).unwrap();
    let open = ExchangeMsg::Open {
        start: 0,
        end: 16,
        depth: 2,
        root: [9; 32],
    };
    er.handle(&mut r.tree, open).unwrap();
    assert!(matches!(
        er.poll(),
        Some(Action::Send(ExchangeMsg::Differ { .. }))
    ));
    (r, er)
}

fn items(leaves: Vec<(u32, Vec<&str>, bool)>) -> ExchangeMsg {
    ExchangeMsg::Items {
        leaves: leaves
            .into_iter()
            .map(|(leaf, keys, more)| LeafItems {
                leaf,
                items: keys
                    .into_iter()
                    .map(|k| (k.as_bytes().to_vec(), h(7)))
                    .collect(),
                more,
            })
            .collect(),
    }
}

#[test]
fn the_pair_really_differs_in_b() {
    let (mut i, mut r) = pair();
    run(&mut i, &mut r, small()).unwrap();
    assert_eq!(i.pushed, BTreeSet::from([b"b".to_vec()]));
    assert!(r.pushed.is_empty());
}

#[test]
fn a_responder_wants_open_first_and_is_over_after_an_error() {
    let (_, mut r) = pair();
    let mut er = Exchange::respond(&r.tree, small()).unwrap();
    let hashes = ExchangeMsg::Hashes {
        level: 1,
        from: 0,
        hashes: vec![[0; 32]],
    };
    let err = er.handle(&mut r.tree, hashes.clone()).unwrap_err();
    assert!(
        matches!(err, ExchangeError::Unexpected { got: "Hashes", .. }),
        "{err}"
    );
    assert_eq!(er.handle(&mut r.tree, hashes), Err(ExchangeError::Over));
    assert!(!er.is_finished());
}

#[test]
fn an_open_of_another_shape_is_refused() {
    for (start, end, depth) in [(0, 16, 3), (1, 16, 2), (0, 17, 2), (0, 16, 0), (0, 16, 200)] {
        let (_, mut r) = pair();
        let mut er = Exchange::respond(&r.tree, small()).unwrap();
        let open = ExchangeMsg::Open {
            start,
            end,
            depth,
            root: [0; 32],
        };
        let err = er.handle(&mut r.tree, open).unwrap_err();
        assert!(matches!(err, ExchangeError::ShapeMismatch { .. }), "{err}");
        assert!(er.poll().is_none(), "nothing is answered");
    }
}

#[test]
fn hashes_out_of_step_empty_or_oversized_are_refused() {
    let cases = [
        (2, 0, 2, "OutOfStep"),
        (1, 1, 1, "OutOfStep"),
        (1, 0, 3, "TooMany"), // level 1 has 2 candidates
        (1, 0, 0, "Malformed"),
    ];
    for (level, from, n, kind) in cases {
        let (mut r, mut er) = opened_responder();
        let msg = ExchangeMsg::Hashes {
            level,
            from,
            hashes: vec![[5; 32]; n],
        };
        let err = er.handle(&mut r.tree, msg).unwrap_err();
        assert!(format!("{err:?}").starts_with(kind), "{kind}: {err:?}");
    }
}

#[test]
fn more_hashes_than_the_limit_are_refused() {
    let (_, mut r) = pair();
    let limits = ExchangeLimits {
        max_hashes: 1,
        ..small()
    };
    let mut er = Exchange::respond(&r.tree, limits).unwrap();
    let open = ExchangeMsg::Open {
        start: 0,
        end: 16,
        depth: 2,
        root: [9; 32],
    };
    er.handle(&mut r.tree, open).unwrap();
    let msg = ExchangeMsg::Hashes {
        level: 1,
        from: 0,
        hashes: vec![[5; 32]; 2],
    };
    let err = er.handle(&mut r.tree, msg).unwrap_err();
    assert_eq!(
        err,
        ExchangeError::TooMany {
            what: "hashes in a message",
            len: 2,
            max: 1
        }
    );
}

#[test]
fn items_for_the_wrong_leaf_or_badly_shaped_are_refused() {
    let cases = [
        (items(vec![(3, vec!["b"], false)]), "WrongLeaf"),
        (
            items(vec![(2, vec!["b"], false), (3, vec![], false)]),
            "WrongLeaf",
        ),
        (
            items(vec![(2, vec!["b"], true), (2, vec![], false)]),
            "Malformed",
        ),
        (items(vec![(2, vec![], true)]), "Malformed"), // a continuation that says nothing
        (items(vec![(2, vec!["b", "a"], false)]), "Malformed"), // not ascending
        (items(vec![(2, vec!["b", "b"], false)]), "Malformed"), // twice
        (items(vec![(2, vec!["a", "b", "c"], false)]), "TooMany"), // max_items 2
        (items(vec![]), "Malformed"),
    ];
    for (msg, kind) in cases {
        let (_, mut r, _, mut er, _) = up_to_items();
        let mut result = er.handle(&mut r.tree, msg);
        // Some defects show only once the local leaf is listed.
        while result.is_ok() {
            match er.poll() {
                Some(Action::ScanLeaf { leaf, start, end }) => {
                    result = er.leaf_items(leaf, r.scan(start, end));
                }
                Some(_) => {}
                None => break,
            }
        }
        let err = result.unwrap_err();
        assert!(format!("{err:?}").starts_with(kind), "{kind}: {err:?}");
    }
}

#[test]
fn a_leaf_continued_past_the_leaf_limit_is_refused() {
    let (_, mut r, _, mut er, _) = up_to_items();
    er.handle(&mut r.tree, items(vec![(2, vec!["a", "b"], true)]))
        .unwrap();
    while let Some(action) = er.poll() {
        if let Action::ScanLeaf { leaf, start, end } = action {
            er.leaf_items(leaf, r.scan(start, end)).unwrap();
        }
    }
    // Two more would make four items listed for the leaf; the limit is three.
    let err = er
        .handle(&mut r.tree, items(vec![(2, vec!["c", "d"], true)]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ExchangeError::TooMany {
                what: "items listed for a leaf",
                len: 4,
                max: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn too_many_item_bytes_are_refused() {
    let (_, mut r, _, mut er, _) = up_to_items();
    let long = "x".repeat(69); // 69 + 32 > 100
    let err = er
        .handle(&mut r.tree, items(vec![(2, vec![&long], false)]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ExchangeError::TooMany {
                what: "item bytes in a message",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_second_items_while_the_first_waits_for_a_scan_is_refused() {
    let (_, mut r, _, mut er, msg) = up_to_items();
    er.handle(&mut r.tree, msg.clone()).unwrap();
    assert!(matches!(er.poll(), Some(Action::ScanLeaf { leaf: 2, .. })));
    let err = er.handle(&mut r.tree, msg).unwrap_err();
    assert!(
        matches!(err, ExchangeError::Unexpected { got: "Items", .. }),
        "{err}"
    );
}

#[test]
fn an_initiator_refuses_bad_verdicts() {
    let cases = [
        (
            ExchangeMsg::Differ {
                level: 0,
                from: 0,
                bits: vec![],
            },
            "Malformed",
        ),
        (
            ExchangeMsg::Differ {
                level: 0,
                from: 0,
                bits: vec![1, 0],
            },
            "Malformed",
        ),
        (
            ExchangeMsg::Differ {
                level: 0,
                from: 0,
                bits: vec![0b10],
            },
            "Malformed",
        ), // stray bit
        (
            ExchangeMsg::Differ {
                level: 1,
                from: 0,
                bits: vec![1],
            },
            "OutOfStep",
        ),
        (
            ExchangeMsg::Differ {
                level: 0,
                from: 3,
                bits: vec![1],
            },
            "OutOfStep",
        ),
        (ExchangeMsg::Want { keys: vec![] }, "Unexpected"),
        (
            ExchangeMsg::Open {
                start: 0,
                end: 16,
                depth: 2,
                root: [0; 32],
            },
            "Unexpected",
        ),
        (ExchangeMsg::Items { leaves: vec![] }, "Unexpected"),
    ];
    for (msg, kind) in cases {
        let (mut i, _) = pair();
        let mut ei = Exchange::initiate(&mut i.tree, small()).unwrap();
        let err = ei.handle(&mut i.tree, msg).unwrap_err();
        assert!(format!("{err:?}").starts_with(kind), "{kind}: {err:?}");
    }
}

#[test]
fn a_want_for_keys_not_offered_is_refused() {
    for keys in [vec![b"zz".to_vec()], vec![b"b".to_vec(), b"b".to_vec()]] {
        let (mut i, _, mut ei, _, _) = up_to_items();
        let err = ei
            .handle(&mut i.tree, ExchangeMsg::Want { keys })
            .unwrap_err();
        assert_eq!(err, ExchangeError::UnofferedKey);
    }
    let (mut i, _, mut ei, _, _) = up_to_items();
    ei.handle(
        &mut i.tree,
        ExchangeMsg::Want {
            keys: vec![b"b".to_vec()],
        },
    )
    .unwrap();
    assert_eq!(ei.poll(), Some(Action::Push(vec![b"b".to_vec()])));
    assert!(ei.is_finished());
}

#[test]
fn leaf_items_are_checked() {
    let key = |k: &str| (k.as_bytes().to_vec(), h(1));
    let cases = [
        (3, vec![key("b")], "NotAwaitingLeaf"),
        (2, vec![key("b"), key("b")], "DuplicateKey"),
        (2, vec![key("a"), key("b"), key("c"), key("d")], "TooMany"), // max_leaf_items 3
        (2, vec![key(&"x".repeat(69))], "KeyTooLong"),                // over 100 - 32
    ];
    for (leaf, list, kind) in cases {
        let (mut i, _) = pair();
        let mut ei = Exchange::initiate(&mut i.tree, small()).unwrap();
        // Walk the initiator to its first scan with the responder's real answers.
        let (_, mut r) = pair();
        let mut er = Exchange::respond(&r.tree, small()).unwrap();
        let scan = loop {
            match ei.poll() {
                Some(Action::Send(m)) => {
                    er.handle(&mut r.tree, m).unwrap();
                    while let Some(Action::Send(back)) = er.poll() {
                        ei.handle(&mut i.tree, back).unwrap();
                    }
                }
                Some(Action::ScanLeaf { leaf, .. }) => break leaf,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(scan, 2);
        let err = ei.leaf_items(leaf, list).unwrap_err();
        assert!(format!("{err:?}").starts_with(kind), "{kind}: {err:?}");
        assert_eq!(ei.leaf_items(2, vec![]), Err(ExchangeError::Over));
    }
    let (i, _) = pair();
    let mut idle = Exchange::respond(&i.tree, small()).unwrap();
    assert_eq!(
        idle.leaf_items(0, vec![]),
        Err(ExchangeError::NotAwaitingLeaf { leaf: 0 })
    );
}

#[test]
fn a_tree_of_another_shape_is_refused() {
    let (mut i, _) = pair();
    let mut ei = Exchange::initiate(&mut i.tree, small()).unwrap();
    let mut other = RangeTree::new(0, 16, 3).unwrap();
    let msg = ExchangeMsg::Differ {
        level: 0,
        from: 0,
        bits: vec![1],
    };
    assert_eq!(ei.handle(&mut other, msg), Err(ExchangeError::TreeMismatch));
}

#[test]
fn useless_limits_are_refused() {
    let (mut i, _) = pair();
    for limits in [
        ExchangeLimits {
            max_hashes: 0,
            ..small()
        },
        ExchangeLimits {
            max_items: 0,
            ..small()
        },
        ExchangeLimits {
            max_leaf_items: 0,
            ..small()
        },
        ExchangeLimits {
            max_item_bytes: 32,
            ..small()
        },
    ] {
        assert!(matches!(
            Exchange::initiate(&mut i.tree, limits),
            Err(ExchangeError::BadLimits(_))
        ));
    }
}
