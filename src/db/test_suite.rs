//! One engine-independent test suite, run against every engine, plus engine-specific tests and
//! a property test comparing each engine with a `BTreeMap` model.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn collect(it: ValueIter) -> Vec<(Value, Value)> {
    it.map(|r| r.unwrap()).collect()
}

fn tx_collect(it: TxValueIter<'_>) -> Vec<(Value, Value)> {
    it.map(|r| r.unwrap()).collect()
}

fn model_range(m: &Model, low: Bound<&[u8]>, high: Bound<&[u8]>, rev: bool) -> Vec<(Value, Value)> {
    if bounds_empty(low, high) {
        return vec![];
    }
    let it = m
        .range::<[u8], _>((low, high))
        .map(|(k, v)| (k.clone(), v.clone()));
    if rev {
        it.rev().collect()
    } else {
        it.collect()
    }
}

fn dump(tree: &Tree) -> Model {
    collect(tree.iter().unwrap()).into_iter().collect()
}

fn bound_kinds(k: &[u8]) -> [Bound<&[u8]>; 3] {
    [Bound::Included(k), Bound::Excluded(k), Bound::Unbounded]
}

fn be(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

// ---------------------------------------------------------------------------------------------
// The generic suite
// ---------------------------------------------------------------------------------------------

/// Runs the whole suite on `db` (trees it creates must not exist yet).
#[allow(dead_code)]
pub(crate) fn run_suite(db: &Db) {
    crud(db);
    ranges(db);
    many_keys(db);
    iterator_isolation(db);
    tx_commit_abort(db);
    tx_panic_rolls_back(db);
    multi_tree_atomicity(db);
    len_first_last(db);
    snapshot_roundtrip(db);
    nested_writes_rejected(db);
    list_trees(db);
    read_after_write_across_threads(db);
}

fn crud(db: &Db) {
    let t = db.open_tree("crud").unwrap();
    assert_eq!(t.name(), "crud");
    assert_eq!(t.get(b"a").unwrap(), None);
    assert_eq!(t.insert(b"a", b"1").unwrap(), None);
    assert_eq!(t.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.insert(b"a", b"2").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(t.len().unwrap(), 1);
    assert!(!t.is_empty().unwrap());
    assert_eq!(t.remove(b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(t.remove(b"a").unwrap(), None);
    assert_eq!(t.get(b"a").unwrap(), None);
    assert!(t.is_empty().unwrap());

    // Empty keys and values are legal, and an empty value is not a missing one.
    assert_eq!(t.insert(b"", b"").unwrap(), None);
    assert_eq!(t.get(b"").unwrap(), Some(vec![]));
    assert_eq!(t.insert(b"e", b"").unwrap(), None);
    assert_eq!(t.get(b"e").unwrap(), Some(vec![]));
    assert_eq!(t.len().unwrap(), 2);

    // Large values and binary keys.
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    t.insert([0u8, 255, 0], &big).unwrap();
    assert_eq!(t.get([0u8, 255, 0]).unwrap().as_deref(), Some(&big[..]));

    // Two handles on one tree; two trees are independent.
    let t2 = db.open_tree("crud").unwrap();
    t2.insert(b"x", b"y").unwrap();
    assert_eq!(t.get(b"x").unwrap(), Some(b"y".to_vec()));
    let other = db.open_tree("crud-other").unwrap();
    assert_eq!(other.get(b"x").unwrap(), None);
    other.insert(b"x", b"z").unwrap();
    assert_eq!(t.get(b"x").unwrap(), Some(b"y".to_vec()));

    // Handles are Send + Sync + Clone + 'static.
    fn assert_handle<T: Send + Sync + Clone + 'static>(_: &T) {}
    assert_handle(db);
    assert_handle(&t);
    assert!(matches!(db.open_tree(""), Err(Error::InvalidTreeName(_))));
}

fn ranges(db: &Db) {
    let t = db.open_tree("ranges").unwrap();
    let keys: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"ab".to_vec(),
        b"b".to_vec(),
        b"ba".to_vec(),
        b"c".to_vec(),
        vec![0xff],
        vec![0xff, 0xff],
    ];
    let mut model = Model::new();
    for (i, k) in keys.iter().enumerate() {
        let v = format!("v{i}").into_bytes();
        t.insert(k, &v).unwrap();
        model.insert(k.clone(), v);
    }
    // Probes: present keys, absent keys between them, before and after everything.
    let mut probes = keys.clone();
    probes.extend([
        b"0".to_vec(),
        b"aa".to_vec(),
        b"bb".to_vec(),
        vec![0xff, 0],
        vec![0xff; 3],
    ]);
    let check_all = |t: &Tree, model: &Model| {
        for lo in &probes {
            for hi in &probes {
                for low in bound_kinds(lo) {
                    for high in bound_kinds(hi) {
                        for rev in [false, true] {
                            let got = collect(if rev {
                                t.range_rev((low, high)).unwrap()
                            } else {
                                t.range((low, high)).unwrap()
                            });
                            assert_eq!(
                                got,
                                model_range(model, low, high, rev),
                                "{low:?} {high:?} rev={rev}"
                            );
                        }
                    }
                }
            }
        }
    };
    check_all(&t, &model);

    // Range syntax.
    let all: Vec<_> = model.clone().into_iter().collect();
    assert_eq!(collect(t.iter().unwrap()), all);
    assert_eq!(
        collect(t.iter_rev().unwrap()),
        all.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(collect(t.range(..).unwrap()), all);
    let sub = |v: &[usize]| v.iter().map(|i| all[*i].clone()).collect::<Vec<_>>();
    assert_eq!(
        collect(t.range(&b"a"[..]..&b"b"[..]).unwrap()),
        sub(&[1, 2, 3])
    );
    assert_eq!(
        collect(t.range(b"a".to_vec()..=b"b".to_vec()).unwrap()),
        sub(&[1, 2, 3, 4])
    );
    assert_eq!(
        collect(t.range_rev(..b"a\0".to_vec()).unwrap()),
        sub(&[1, 0])
    );
    assert_eq!(collect(t.range(b"c".to_vec()..).unwrap()), sub(&[6, 7, 8]));
    assert_eq!(collect(t.range_rev(..=b"".to_vec()).unwrap()), sub(&[0]));
    // Inverted or degenerate ranges are empty, not panics.
    assert!(collect(t.range(&b"c"[..]..&b"a"[..]).unwrap()).is_empty());
    assert!(collect(t.range(&b"b"[..]..&b"b"[..]).unwrap()).is_empty());
    assert!(
        collect(
            t.range_rev((Bound::Excluded(&b"b"[..]), Bound::Excluded(&b"b"[..])))
                .unwrap()
        )
        .is_empty()
    );

    // Same bounds inside a transaction, over uncommitted writes.
    let r: TxResult<(), ()> = db.transaction(|tx| {
        let mut m = model.clone();
        for k in [&b"aa"[..], b"b", b"", &[0xff, 0xff, 0xff]] {
            if m.remove(k).is_some() {
                tx.remove(&t, k)?;
            } else {
                tx.insert(&t, k, b"tx")?;
                m.insert(k.to_vec(), b"tx".to_vec());
            }
        }
        tx.insert(&t, b"a", b"overwritten")?;
        m.insert(b"a".to_vec(), b"overwritten".to_vec());
        for lo in &probes {
            for hi in &probes {
                for low in bound_kinds(lo) {
                    for high in bound_kinds(hi) {
                        for rev in [false, true] {
                            let got = tx_collect(if rev {
                                tx.range_rev(&t, (low, high))?
                            } else {
                                tx.range(&t, (low, high))?
                            });
                            assert_eq!(got, model_range(&m, low, high, rev));
                        }
                    }
                }
            }
        }
        let all: Vec<_> = m.clone().into_iter().collect();
        assert_eq!(tx_collect(tx.iter(&t)?), all);
        assert_eq!(
            tx_collect(tx.iter_rev(&t)?),
            all.iter().rev().cloned().collect::<Vec<_>>()
        );
        // Roll back: the committed state must be untouched.
        Err(TxError::Abort(()))
    });
    assert!(matches!(r, Err(TxError::Abort(()))));
    check_all(&t, &model);
}

fn many_keys(db: &Db) {
    const N: u32 = 10_000;
    let t = db.open_tree("many").unwrap();
    db.transaction::<_, (), _>(|tx| {
        // Insert in a scrambled order.
        for i in 0..N {
            let j = (i * 7919) % N;
            tx.insert(&t, be(j), be(j * 2))?;
        }
        assert_eq!(tx.len(&t)?, N as usize);
        Ok(())
    })
    .unwrap();
    assert_eq!(t.len().unwrap(), N as usize);
    let mut n = 0;
    for (i, kv) in t.iter().unwrap().enumerate() {
        let (k, v) = kv.unwrap();
        assert_eq!(k, be(i as u32));
        assert_eq!(v, be(i as u32 * 2));
        n += 1;
    }
    assert_eq!(n, N);
    let rev: Vec<_> = collect(t.iter_rev().unwrap());
    assert_eq!(rev.len(), N as usize);
    assert!(rev.windows(2).all(|w| w[0].0 > w[1].0));
    assert_eq!(rev[0].0, be(N - 1));
    let mid = collect(t.range(be(1000)..be(2000)).unwrap());
    assert_eq!(mid.len(), 1000);
    assert_eq!(mid[0].0, be(1000));
    assert_eq!(mid[999].0, be(1999));
    let mid_rev = collect(t.range_rev(be(1000)..=be(2000)).unwrap());
    assert_eq!(mid_rev.len(), 1001);
    assert_eq!(mid_rev[0].0, be(2000));
    // A partially consumed iterator, dropped early.
    let first3: Vec<_> = t.iter().unwrap().take(3).map(|r| r.unwrap().0).collect();
    assert_eq!(first3, vec![be(0).to_vec(), be(1).to_vec(), be(2).to_vec()]);
    assert_eq!(t.first().unwrap().unwrap().0, be(0));
    assert_eq!(t.last().unwrap().unwrap().0, be(N - 1));

    // Remove the odd keys in one transaction, iterating inside it.
    db.transaction::<_, (), _>(|tx| {
        let odd: Vec<Value> = tx
            .iter(&t)?
            .map(|r| r.map(|(k, _)| k))
            .filter(|k| k.as_ref().map_or(true, |k| k[3] % 2 == 1))
            .collect::<Result<_, _>>()?;
        assert_eq!(odd.len(), N as usize / 2);
        for k in odd {
            assert!(tx.remove(&t, k)?.is_some());
        }
        assert_eq!(tx.len(&t)?, N as usize / 2);
        Ok(())
    })
    .unwrap();
    assert_eq!(t.len().unwrap(), N as usize / 2);
    assert!(
        collect(t.iter().unwrap())
            .iter()
            .all(|(k, _)| k[3] % 2 == 0)
    );

    // Writing while iterating (outside transactions) is allowed.
    let small = db.open_tree("many-small").unwrap();
    db.transaction::<_, (), _>(|tx| {
        for i in 0..300u32 {
            tx.insert(&small, be(i), b"x")?;
        }
        Ok(())
    })
    .unwrap();
    let mut seen = 0;
    for kv in small.iter().unwrap() {
        let (k, _) = kv.unwrap();
        small.remove(&k).unwrap();
        small.insert([&k[..], b"+"].concat(), b"y").unwrap();
        seen += 1;
    }
    assert_eq!(seen, 300);
    assert_eq!(small.len().unwrap(), 300);
    assert!(
        collect(small.iter().unwrap())
            .iter()
            .all(|(k, v)| k.len() == 5 && v == b"y")
    );
}

fn iterator_isolation(db: &Db) {
    let t = db.open_tree("isolation").unwrap();
    for i in 0..200u32 {
        t.insert(be(i), b"old").unwrap();
    }
    let mut it = t.iter().unwrap();
    let first = it.next().unwrap().unwrap();
    assert_eq!(first.0, be(0));
    t.insert(be(100), b"new").unwrap();
    t.remove(be(150)).unwrap();
    t.insert(be(1000), b"new").unwrap();
    db.transaction::<_, (), _>(|tx| {
        tx.remove(&t, be(1))?;
        Ok(())
    })
    .unwrap();
    let rest = collect(it);
    assert_eq!(rest.len(), 199);
    assert!(rest.iter().all(|(_, v)| v == b"old"));
    // A new iterator sees everything.
    let now = dump(&t);
    assert_eq!(now.len(), 199);
    assert_eq!(now.get(&be(100)[..]).unwrap(), b"new");
    assert!(!now.contains_key(&be(150)[..]));
    assert!(!now.contains_key(&be(1)[..]));
}

#[derive(Debug, PartialEq)]
struct MyErr(&'static str);

fn tx_commit_abort(db: &Db) {
    let a = db.open_tree("tx-a").unwrap();
    let b = db.open_tree("tx-b").unwrap();
    a.insert(b"keep", b"0").unwrap();
    b.insert(b"k", b"b0").unwrap();

    // Commit, with read-your-writes inside.
    let r: TxResult<u32, MyErr> = db.transaction(|tx| {
        assert_eq!(tx.insert(&a, b"k", b"a1")?, None);
        assert_eq!(tx.get(&a, b"k")?, Some(b"a1".to_vec()));
        assert_eq!(tx.remove(&b, b"k")?, Some(b"b0".to_vec()));
        assert_eq!(tx.get(&b, b"k")?, None);
        assert_eq!(tx.len(&a)?, 2);
        assert_eq!(tx.len(&b)?, 0);
        assert!(tx.is_empty(&b)?);
        assert_eq!(tx.first(&a)?.unwrap().0, b"k");
        assert_eq!(tx.last(&a)?.unwrap().0, b"keep");
        assert_eq!(tx.get_gt(&a, b"k")?.unwrap().0, b"keep");
        assert_eq!(tx.get_lt(&a, b"keep")?.unwrap().0, b"k");
        // Outside the transaction, nothing is visible yet.
        assert_eq!(a.get(b"k").unwrap(), None);
        assert_eq!(b.get(b"k").unwrap(), Some(b"b0".to_vec()));
        Ok(42)
    });
    assert_eq!(r.unwrap(), 42);
    assert_eq!(a.get(b"k").unwrap(), Some(b"a1".to_vec()));
    assert_eq!(b.get(b"k").unwrap(), None);

    // Abort leaves no trace: inserts, overwrites and removals are rolled back.
    let before = (dump(&a), dump(&b));
    let r: TxResult<(), MyErr> = db.transaction(|tx| {
        tx.insert(&a, b"new", b"x")?;
        tx.insert(&a, b"k", b"overwritten")?;
        tx.remove(&a, b"keep")?;
        tx.insert(&b, b"k", b"b2")?;
        assert_eq!(tx.get(&a, b"k")?, Some(b"overwritten".to_vec()));
        tx.abort(MyErr("changed my mind"))
    });
    assert!(matches!(r, Err(TxError::Abort(MyErr("changed my mind")))));
    assert_eq!((dump(&a), dump(&b)), before);
    assert_eq!(a.len().unwrap(), 2);

    // A database error inside the closure (here a tree of another database) aborts too.
    let other = Db::open_mem();
    let foreign = other.open_tree("tx-a").unwrap();
    let r: TxResult<(), MyErr> = db.transaction(|tx| {
        tx.insert(&a, b"new", b"x")?;
        tx.insert(&foreign, b"new", b"x")?;
        Ok(())
    });
    assert!(
        matches!(r, Err(TxError::Db(Error::ForeignTree(_)))),
        "{r:?}"
    );
    assert_eq!(a.get(b"new").unwrap(), None);
    assert!(foreign.is_empty().unwrap());

    // Error conversion and display.
    let e: TxError<String> = Error::NestedTransaction.into();
    assert!(e.to_string().contains("nested"));
    assert!(matches!(e.map_abort(|_| ()), TxError::Db(_)));
}

fn tx_panic_rolls_back(db: &Db) {
    let t = db.open_tree("tx-panic").unwrap();
    t.insert(b"a", b"1").unwrap();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: TxResult<(), ()> = db.transaction(|tx| {
            tx.insert(&t, b"a", b"2")?;
            tx.insert(&t, b"b", b"2")?;
            panic!("boom");
        });
    }));
    assert!(res.is_err());
    assert_eq!(dump(&t), Model::from([(b"a".to_vec(), b"1".to_vec())]));
    // The database remains usable, including for writes outside transactions.
    t.insert(b"c", b"3").unwrap();
    db.transaction::<_, (), _>(|tx| {
        tx.insert(&t, b"d", b"4")?;
        Ok(())
    })
    .unwrap();
    assert_eq!(t.len().unwrap(), 3);
}

fn multi_tree_atomicity(db: &Db) {
    let a = db.open_tree("atom-a").unwrap();
    let b = db.open_tree("atom-b").unwrap();
    let get = |tx: &mut Tx<'_>, t: &Tree| -> Result<i64, Error> {
        Ok(tx
            .get(t, b"n")?
            .map_or(0, |v| i64::from_be_bytes(v.try_into().unwrap())))
    };
    db.transaction::<_, (), _>(|tx| {
        tx.insert(&a, b"n", 1000i64.to_be_bytes())?;
        tx.insert(&b, b"n", 0i64.to_be_bytes())?;
        Ok(())
    })
    .unwrap();
    const THREADS: i64 = 4;
    const MOVES: i64 = 50;
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        // A checker reading both trees in transactions: the invariant always holds.
        let checker = {
            let (db, a, b, stop) = (db.clone(), a.clone(), b.clone(), stop.clone());
            s.spawn(move || {
                let mut checks = 0;
                while !stop.load(Ordering::Acquire) || checks == 0 {
                    db.transaction::<_, (), _>(|tx| {
                        assert_eq!(get(tx, &a)? + get(tx, &b)?, 1000);
                        Ok(())
                    })
                    .unwrap();
                    checks += 1;
                }
            })
        };
        let movers: Vec<_> = (0..THREADS)
            .map(|i| {
                let (db, a, b) = (db.clone(), a.clone(), b.clone());
                s.spawn(move || {
                    for j in 0..MOVES {
                        let r: TxResult<(), &str> = db.transaction(|tx| {
                            let (x, y) = (get(tx, &a)?, get(tx, &b)?);
                            tx.insert(&a, b"n", (x - 1).to_be_bytes())?;
                            if (i + j) % 5 == 0 {
                                // Half-done moves are rolled back.
                                return Err(TxError::Abort("skip"));
                            }
                            tx.insert(&b, b"n", (y + 1).to_be_bytes())?;
                            Ok(())
                        });
                        assert!(r.is_ok() || matches!(r, Err(TxError::Abort("skip"))));
                    }
                })
            })
            .collect();
        for m in movers {
            m.join().unwrap();
        }
        stop.store(true, Ordering::Release);
        checker.join().unwrap();
    });
    let aborted = (0..THREADS)
        .flat_map(|i| (0..MOVES).map(move |j| (i + j) % 5 == 0))
        .filter(|x| *x)
        .count() as i64;
    let moved = THREADS * MOVES - aborted;
    let read = |t: &Tree| i64::from_be_bytes(t.get(b"n").unwrap().unwrap().try_into().unwrap());
    assert_eq!(read(&b), moved);
    assert_eq!(read(&a), 1000 - moved);
}

fn len_first_last(db: &Db) {
    let t = db.open_tree("lfl").unwrap();
    assert_eq!(t.len().unwrap(), 0);
    assert!(t.is_empty().unwrap());
    assert_eq!(t.first().unwrap(), None);
    assert_eq!(t.last().unwrap(), None);
    assert_eq!(t.get_gt(b"").unwrap(), None);
    assert_eq!(t.get_lt(b"z").unwrap(), None);
    for k in [&b"b"[..], b"d", b"f"] {
        t.insert(k, [k, b"v"].concat()).unwrap();
    }
    let kv = |k: &[u8]| Some((k.to_vec(), [k, b"v"].concat()));
    assert_eq!(t.len().unwrap(), 3);
    assert_eq!(t.first().unwrap(), kv(b"b"));
    assert_eq!(t.last().unwrap(), kv(b"f"));
    assert_eq!(t.get_gt(b"").unwrap(), kv(b"b"));
    assert_eq!(t.get_gt(b"b").unwrap(), kv(b"d"));
    assert_eq!(t.get_gt(b"c").unwrap(), kv(b"d"));
    assert_eq!(t.get_gt(b"f").unwrap(), None);
    assert_eq!(t.get_lt(b"b").unwrap(), None);
    assert_eq!(t.get_lt(b"d").unwrap(), kv(b"b"));
    assert_eq!(t.get_lt(b"e").unwrap(), kv(b"d"));
    assert_eq!(t.get_lt(b"zz").unwrap(), kv(b"f"));
    assert_eq!(t.get_lt(b"").unwrap(), None);
    t.remove(b"b").unwrap();
    assert_eq!(t.first().unwrap(), kv(b"d"));
    assert_eq!(t.len().unwrap(), 2);
}

fn snapshot_roundtrip(db: &Db) {
    let a = db.open_tree("snap-a").unwrap();
    let b = db.open_tree("snap-b").unwrap();
    let _empty = db.open_tree("snap-empty").unwrap();
    db.transaction::<_, (), _>(|tx| {
        for i in 0..2000u32 {
            tx.insert(&a, be(i), be(i + 1))?;
        }
        tx.insert(&b, b"", b"empty key")?;
        tx.insert(&b, b"x", b"")?;
        Ok(())
    })
    .unwrap();
    let before: BTreeMap<String, Model> = db
        .list_trees()
        .unwrap()
        .into_iter()
        .map(|n| {
            let t = db.open_tree(&n).unwrap();
            (n, dump(&t))
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let snap_dir = dir.path().join("snapshots").join("1");
    // Keep an iterator alive during the snapshot, and write concurrently.
    let it = a.iter().unwrap();
    let path = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..20u32 {
                a.insert(be(100_000 + i), b"late").unwrap();
            }
        });
        let path = db.snapshot(&snap_dir);
        writer.join().unwrap();
        path.unwrap()
    });
    assert_eq!(collect(it).len(), 2000);
    assert_eq!(path, snap_dir.join(SNAPSHOT_FILE));
    // Writes after the snapshot are not in it (those racing with it may or may not be).
    a.insert(b"after", b"x").unwrap();
    b.remove(b"x").unwrap();
    assert!(matches!(
        db.snapshot(&snap_dir),
        Err(Error::SnapshotExists(_))
    ));

    let snap = Db::open_redb(&path, true).unwrap();
    assert_eq!(snap.engine(), "redb");
    let names = snap.list_trees().unwrap();
    assert_eq!(names, before.keys().cloned().collect::<Vec<_>>());
    for (name, content) in &before {
        let mut got = dump(&snap.open_tree(name).unwrap());
        if name == "snap-a" {
            got.retain(|_, v| v != b"late");
        }
        assert_eq!(&got, content, "tree {name}");
    }
    drop(snap);
    assert!(!snap_dir.join(format!("{SNAPSHOT_FILE}.tmp")).exists());
}

fn nested_writes_rejected(db: &Db) {
    let t = db.open_tree("nested").unwrap();
    t.insert(b"k", b"before").unwrap();
    let r: TxResult<(), ()> = db.transaction(|tx| {
        tx.insert(&t, b"k", b"inside")?;
        assert!(matches!(
            t.insert(b"k", b"x"),
            Err(Error::NestedTransaction)
        ));
        assert!(matches!(t.remove(b"k"), Err(Error::NestedTransaction)));
        assert!(matches!(
            db.open_tree("nested2"),
            Err(Error::NestedTransaction)
        ));
        let inner: TxResult<(), ()> = db.transaction(|_| Ok(()));
        assert!(matches!(inner, Err(TxError::Db(Error::NestedTransaction))));
        // Reading through the tree sees the committed state.
        assert_eq!(t.get(b"k").unwrap(), Some(b"before".to_vec()));
        // Another database is fine.
        let other = Db::open_mem();
        other.open_tree("x").unwrap().insert(b"a", b"b").unwrap();
        Ok(())
    });
    r.unwrap();
    assert_eq!(t.get(b"k").unwrap(), Some(b"inside".to_vec()));
    // The guard is released, also after a panic.
    t.insert(b"k", b"after").unwrap();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: TxResult<(), ()> = db.transaction(|_| panic!("boom"));
    }));
    t.insert(b"k", b"after-panic").unwrap();
}

fn list_trees(db: &Db) {
    db.open_tree("lt-2").unwrap();
    db.open_tree("lt-1").unwrap();
    db.open_tree("lt-1").unwrap();
    let names = db.list_trees().unwrap();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert!(names.contains(&"lt-1".to_string()));
    assert!(names.contains(&"lt-2".to_string()));
    assert!(!db.engine().is_empty());
    assert!(format!("{db:?}").contains(db.engine()));
}

fn read_after_write_across_threads(db: &Db) {
    let t = db.open_tree("raw").unwrap();
    let (send, recv) = std::sync::mpsc::channel::<u32>();
    std::thread::scope(|s| {
        let t2 = t.clone();
        let reader = s.spawn(move || {
            // Keep reading in the background so that cached read state exists.
            for i in recv {
                let v = t2.get(b"n").unwrap().unwrap();
                assert!(u32::from_be_bytes(v.try_into().unwrap()) >= i);
                assert!(t2.get(be(i)).unwrap().is_some());
            }
        });
        for i in 0..200u32 {
            t.insert(be(i), b"").unwrap();
            t.insert(b"n", be(i)).unwrap();
            // Read on this thread too, then hand over.
            assert_eq!(t.get(b"n").unwrap(), Some(be(i).to_vec()));
            send.send(i).unwrap();
        }
        drop(send);
        reader.join().unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Running the suite on each engine
// ---------------------------------------------------------------------------------------------

fn redb_in(dir: &Path, fsync: bool) -> Db {
    Db::open_redb(&dir.join("meta").join("db.redb"), fsync).unwrap()
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        mod mem {
            $(#[test]
            fn $name() {
                super::$name(&super::Db::open_mem());
            })*
        }
        mod redb {
            $(#[test]
            fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&super::redb_in(dir.path(), true));
            })*
        }
        mod redb_lazy {
            $(#[test]
            fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&super::redb_in(dir.path(), false));
            })*
        }
    };
}

suite_tests!(
    crud,
    ranges,
    many_keys,
    iterator_isolation,
    tx_commit_abort,
    tx_panic_rolls_back,
    multi_tree_atomicity,
    len_first_last,
    snapshot_roundtrip,
    nested_writes_rejected,
    list_trees,
    read_after_write_across_threads,
);

#[test]
fn whole_suite_on_one_db() {
    run_suite(&Db::open_mem());
    let dir = tempfile::tempdir().unwrap();
    run_suite(&redb_in(dir.path(), false));
}

// ---------------------------------------------------------------------------------------------
// redb-specific
// ---------------------------------------------------------------------------------------------

fn fill_and_reopen(fsync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("db.redb");
    let expected: BTreeMap<String, Model>;
    {
        let db = Db::open_redb(&path, fsync).unwrap();
        assert_eq!(db.engine(), "redb");
        let a = db.open_tree("a").unwrap();
        let b = db.open_tree("b").unwrap();
        db.open_tree("empty").unwrap();
        for i in 0..50u32 {
            a.insert(be(i), be(i)).unwrap();
        }
        a.remove(be(7)).unwrap();
        db.transaction::<_, (), _>(|tx| {
            for i in 0..500u32 {
                tx.insert(&b, be(i), b"b")?;
            }
            Ok(())
        })
        .unwrap();
        let _: TxResult<(), ()> = db.transaction(|tx| {
            tx.insert(&b, b"aborted", b"x")?;
            Err(TxError::Abort(()))
        });
        db.flush().unwrap();
        a.insert(b"after-flush", b"x").unwrap();
        expected = ["a", "b", "empty"]
            .into_iter()
            .map(|n| (n.to_string(), dump(&db.open_tree(n).unwrap())))
            .collect();
        // Iterators keep the database open; all handles are dropped here.
        let _it = a.iter().unwrap();
    }
    let db = Db::open_redb(&path, fsync).unwrap();
    assert_eq!(db.list_trees().unwrap(), vec!["a", "b", "empty"]);
    for (name, content) in &expected {
        assert_eq!(&dump(&db.open_tree(name).unwrap()), content, "{name}");
    }
    assert_eq!(expected["a"].len(), 50);
    assert!(!expected["b"].contains_key(&b"aborted"[..]));
}

#[test]
fn redb_reopen_keeps_data_fsync() {
    fill_and_reopen(true);
}

#[test]
fn redb_reopen_keeps_data_lazy() {
    fill_and_reopen(false);
}

/// Child half of [`redb_crash_durability`]: writes, then dies without closing the database.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("GRENIER_DB_CRASH_CHILD") else {
        return;
    };
    let dir = Path::new(&dir);
    let durable = Db::open_redb(&dir.join("fsync.redb"), true).unwrap();
    let t = durable.open_tree("t").unwrap();
    t.insert(b"single", b"1").unwrap();
    durable
        .transaction::<_, (), _>(|tx| tx.insert(&t, b"tx", b"1").map(drop).map_err(Into::into))
        .unwrap();

    let lazy = Db::open_redb(&dir.join("lazy.redb"), false).unwrap();
    let t = lazy.open_tree("t").unwrap();
    t.insert(b"flushed", b"1").unwrap();
    lazy.flush().unwrap();
    t.insert(b"background", b"1").unwrap();
    std::thread::sleep(LAZY_FLUSH_INTERVAL * 2);
    t.insert(b"maybe-lost", b"1").unwrap();
    std::process::abort();
}

/// Committed data survives a crash: immediately with `fsync`, after a flush otherwise.
#[test]
fn redb_crash_durability() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "db::test_suite::crash_child", "--nocapture"])
        .env("GRENIER_DB_CRASH_CHILD", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
    let db = Db::open_redb(&dir.path().join("fsync.redb"), true).unwrap();
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.get(b"single").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(b"tx").unwrap(), Some(b"1".to_vec()));
    let db = Db::open_redb(&dir.path().join("lazy.redb"), false).unwrap();
    let t = db.open_tree("t").unwrap();
    assert_eq!(t.get(b"flushed").unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(b"background").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn redb_open_twice_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let db = Db::open_redb(&path, true).unwrap();
    let e = Db::open_redb(&path, true).unwrap_err();
    assert!(matches!(e, Error::Redb(_)), "{e}");
    drop(db);
    Db::open_redb(&path, true).unwrap();
}

#[test]
fn mem_engine_name_and_snapshot_of_empty_db() {
    let db = Db::open_mem();
    assert_eq!(db.engine(), "memory");
    assert!(db.list_trees().unwrap().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let path = db.snapshot(dir.path()).unwrap();
    let snap = Db::open_redb(&path, true).unwrap();
    assert!(snap.list_trees().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Property test: random operations vs a BTreeMap model
// ---------------------------------------------------------------------------------------------

mod model_prop {
    use super::*;
    use proptest::prelude::*;

    const TREES: usize = 2;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, Vec<u8>, Vec<u8>),
        Remove(usize, Vec<u8>),
        Get(usize, Vec<u8>),
        Range(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, bool),
        Len(usize),
        First(usize),
        Last(usize),
        Gt(usize, Vec<u8>),
        Lt(usize, Vec<u8>),
    }

    #[derive(Debug, Clone)]
    enum Step {
        Op(Op),
        Tx(Vec<Op>, bool),
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(0u8..3, 0..3)
    }

    fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            Just(Bound::Unbounded),
            key().prop_map(Bound::Included),
            key().prop_map(Bound::Excluded),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let t = 0..TREES;
        prop_oneof![
            4 => (t.clone(), key(), prop::collection::vec(any::<u8>(), 0..3))
                .prop_map(|(t, k, v)| Op::Insert(t, k, v)),
            2 => (t.clone(), key()).prop_map(|(t, k)| Op::Remove(t, k)),
            1 => (t.clone(), key()).prop_map(|(t, k)| Op::Get(t, k)),
            2 => (t.clone(), bound(), bound(), any::<bool>())
                .prop_map(|(t, l, h, r)| Op::Range(t, l, h, r)),
            1 => t.clone().prop_map(Op::Len),
            1 => t.clone().prop_map(Op::First),
            1 => t.clone().prop_map(Op::Last),
            1 => (t.clone(), key()).prop_map(|(t, k)| Op::Gt(t, k)),
            1 => (t, key()).prop_map(|(t, k)| Op::Lt(t, k)),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => op().prop_map(Step::Op),
            1 => (prop::collection::vec(op(), 0..8), any::<bool>())
                .prop_map(|(ops, abort)| Step::Tx(ops, abort)),
        ]
    }

    /// What an operation returns, engine-independently.
    #[derive(Debug, PartialEq)]
    enum Out {
        Val(Option<Value>),
        Kv(Option<(Value, Value)>),
        List(Vec<(Value, Value)>),
        Len(usize),
    }

    fn on_model(m: &mut [Model], op: &Op) -> Out {
        let kv = |x: Option<(&Vec<u8>, &Vec<u8>)>| Out::Kv(x.map(|(k, v)| (k.clone(), v.clone())));
        match op {
            Op::Insert(t, k, v) => Out::Val(m[*t].insert(k.clone(), v.clone())),
            Op::Remove(t, k) => Out::Val(m[*t].remove(k)),
            Op::Get(t, k) => Out::Val(m[*t].get(k).cloned()),
            Op::Range(t, l, h, rev) => Out::List(model_range(&m[*t], as_ref(l), as_ref(h), *rev)),
            Op::Len(t) => Out::Len(m[*t].len()),
            Op::First(t) => kv(m[*t].first_key_value()),
            Op::Last(t) => kv(m[*t].last_key_value()),
            Op::Gt(t, k) => kv(m[*t]
                .range::<[u8], _>((Bound::Excluded(&k[..]), Bound::Unbounded))
                .next()),
            Op::Lt(t, k) => kv(m[*t]
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(&k[..])))
                .next_back()),
        }
    }

    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(k) => Bound::Included(k),
            Bound::Excluded(k) => Bound::Excluded(k),
            Bound::Unbounded => Bound::Unbounded,
        }
    }

    fn on_tree(trees: &[Tree], op: &Op) -> Out {
        match op {
            Op::Insert(t, k, v) => Out::Val(trees[*t].insert(k, v).unwrap()),
            Op::Remove(t, k) => Out::Val(trees[*t].remove(k).unwrap()),
            Op::Get(t, k) => Out::Val(trees[*t].get(k).unwrap()),
            Op::Range(t, l, h, rev) => {
                let r = (as_ref(l), as_ref(h));
                Out::List(collect(if *rev {
                    trees[*t].range_rev(r).unwrap()
                } else {
                    trees[*t].range(r).unwrap()
                }))
            }
            Op::Len(t) => Out::Len(trees[*t].len().unwrap()),
            Op::First(t) => Out::Kv(trees[*t].first().unwrap()),
            Op::Last(t) => Out::Kv(trees[*t].last().unwrap()),
            Op::Gt(t, k) => Out::Kv(trees[*t].get_gt(k).unwrap()),
            Op::Lt(t, k) => Out::Kv(trees[*t].get_lt(k).unwrap()),
        }
    }

    fn on_tx(tx: &mut Tx<'_>, trees: &[Tree], op: &Op) -> Result<Out, Error> {
        Ok(match op {
            Op::Insert(t, k, v) => Out::Val(tx.insert(&trees[*t], k, v)?),
            Op::Remove(t, k) => Out::Val(tx.remove(&trees[*t], k)?),
            Op::Get(t, k) => Out::Val(tx.get(&trees[*t], k)?),
            Op::Range(t, l, h, rev) => {
                let r = (as_ref(l), as_ref(h));
                Out::List(tx_collect(if *rev {
                    tx.range_rev(&trees[*t], r)?
                } else {
                    tx.range(&trees[*t], r)?
                }))
            }
            Op::Len(t) => Out::Len(tx.len(&trees[*t])?),
            Op::First(t) => Out::Kv(tx.first(&trees[*t])?),
            Op::Last(t) => Out::Kv(tx.last(&trees[*t])?),
            Op::Gt(t, k) => Out::Kv(tx.get_gt(&trees[*t], k)?),
            Op::Lt(t, k) => Out::Kv(tx.get_lt(&trees[*t], k)?),
        })
    }

    fn run(db: &Db, steps: &[Step]) {
        let trees: Vec<Tree> = (0..TREES)
            .map(|i| db.open_tree(format!("t{i}")).unwrap())
            .collect();
        let mut model = vec![Model::new(); TREES];
        for step in steps {
            match step {
                Step::Op(op) => {
                    assert_eq!(on_tree(&trees, op), on_model(&mut model, op), "{op:?}");
                }
                Step::Tx(ops, abort) => {
                    let mut m2 = model.clone();
                    let r: TxResult<(), ()> = db.transaction(|tx| {
                        for op in ops {
                            assert_eq!(on_tx(tx, &trees, op)?, on_model(&mut m2, op), "{op:?}");
                        }
                        if *abort {
                            Err(TxError::Abort(()))
                        } else {
                            Ok(())
                        }
                    });
                    match r {
                        Ok(()) => model = m2,
                        Err(TxError::Abort(())) => assert!(*abort),
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            for (t, m) in trees.iter().zip(&model) {
                assert_eq!(&dump(t), m);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn mem_matches_model(steps in prop::collection::vec(step(), 0..60)) {
            run(&Db::open_mem(), &steps);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn redb_matches_model(steps in prop::collection::vec(step(), 0..40)) {
            let dir = tempfile::tempdir().unwrap();
            run(&redb_in(dir.path(), false), &steps);
        }
    }
}

/// Rough throughput figures (`cargo test --release --lib db::test_suite::perf -- --ignored
/// --nocapture`).
#[test]
#[ignore]
fn perf() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    for (name, db) in [
        ("redb fsync", redb_in(&dir.path().join("1"), true)),
        ("redb lazy", redb_in(&dir.path().join("2"), false)),
        ("memory", Db::open_mem()),
    ] {
        let t = db.open_tree("perf").unwrap();
        let n = 100_000u32;
        let start = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            db.transaction::<_, (), _>(|tx| {
                for i in chunk {
                    tx.insert(&t, be(i.wrapping_mul(2654435761)), [0u8; 100])?;
                }
                Ok(())
            })
            .unwrap();
        }
        let el = start.elapsed();
        println!(
            "{name}: batched insert {:.0} keys/s",
            n as f64 / el.as_secs_f64()
        );
        let start = Instant::now();
        for i in 0..1000u32 {
            t.insert(be(i), b"single").unwrap();
        }
        let el = start.elapsed();
        println!("{name}: single insert {:.0} /s", 1000.0 / el.as_secs_f64());
        let start = Instant::now();
        let reads = 400_000u32;
        for i in 0..reads {
            t.get(be((i % n).wrapping_mul(2654435761)))
                .unwrap()
                .unwrap();
        }
        let el = start.elapsed();
        println!(
            "{name}: point reads {:.0} /s",
            reads as f64 / el.as_secs_f64()
        );
        let start = Instant::now();
        let total = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u32)
                .map(|k| {
                    let t = t.clone();
                    s.spawn(move || {
                        for i in 0..reads / 4 {
                            t.get(be(((i * 4 + k) % n).wrapping_mul(2654435761)))
                                .unwrap()
                                .unwrap();
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            reads
        });
        let el = start.elapsed();
        println!(
            "{name}: point reads 4 threads {:.0} /s",
            total as f64 / el.as_secs_f64()
        );
        let start = Instant::now();
        let c = t.iter().unwrap().count();
        let el = start.elapsed();
        println!("{name}: scan {:.0} keys/s", c as f64 / el.as_secs_f64());
    }
}

/// The database holds every S3 secret key: its file is private whatever the umask, also when it existed
/// with a looser mode.
#[test]
fn redb_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    {
        let db = Db::open_redb(&path, false).unwrap();
        db.open_tree("t").unwrap().insert(b"k", b"v").unwrap();
        db.flush().unwrap();
    }
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = Db::open_redb(&path, false).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        db.open_tree("t").unwrap().get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}
