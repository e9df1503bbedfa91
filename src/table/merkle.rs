//! Merkle trees of a table's entries, one per partition, kept up to date incrementally (anti-entropy,
//! see [`super::sync`]).
//!
//! # What is hashed
//!
//! An *item* is one entry of the table: its storage key `k = hash(partition key) ‖ sort key` and the
//! BLAKE2 hash `vh` of its stored encoding. Its partition is `k[0]`. Within a partition, items are
//! placed in a radix tree (base 256) by `kh = blake2(k)`, so the tree is balanced whatever the keys:
//!
//! - the node at prefix `P` (0 to 32 bytes of `kh`) covers the items whose `kh` starts with `P`;
//! - no item: the node is **empty**, and absent from the database (its hash is 32 zero bytes);
//! - one item: the node is a **leaf** `(k, vh)`;
//! - two or more: an **intermediate** node listing `(next byte b, hash of the node at P ‖ b)` for every
//!   non-empty child, in increasing order of `b`.
//!
//! This canonical shape depends only on the set of items, never on the order in which they were
//! inserted and removed; so two replicas with the same items have the same root hash, and replicas with
//! different items (or different versions of an item) have different ones (up to BLAKE2 collisions).
//! With `M` items in a partition the tree has about `log256(M) + 1` levels.
//!
//! Node hashes (the contract between nodes that compare trees; same in every release speaking
//! `…/sync/v1`): leaf = `blake2("L" ‖ u32 BE len(k) ‖ k ‖ vh)`, intermediate =
//! `blake2("I" ‖ b₁ ‖ h₁ ‖ b₂ ‖ h₂ …)`.
//!
//! # Storage
//!
//! Tree `<table>:merkle` in the metadata database: `partition (1 byte) ‖ P` → [`MerkleNode`] in its
//! versioned encoding (`GRmerkle01`). All nodes of a subtree are contiguous in key order, so the items
//! of a subtree are one range scan.
//!
//! # Updates
//!
//! [`TableData::update_entry`] writes `merkle_todo[k] = vh` (empty when the entry was removed) in the same
//! transaction as the entry. The [`MerkleUpdater`] consumes that to-do tree in batches: in one
//! transaction it reads each to-do value, applies it to the tree (walking down from the partition's root,
//! splitting a leaf into an intermediate node on insertion, and folding a lone leaf back up on removal,
//! then rewriting the hashes on the way up) and removes that to-do entry. Because the value is read and
//! removed in the same (serialized) transaction, a newer change of the same key written concurrently is
//! either already the value processed, or is written after the removal and stays in the to-do tree:
//! no change is ever lost. That transaction is lazy (it becomes durable with the next durable commit):
//! a crash keeps a prefix of the commits, so the tree and its to-do tree always agree.
//!
//! **Invariant:** like the rest of `table`, this module knows nothing about S3: items are opaque keys
//! and value hashes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::TableError;
use super::data::TableData;
use super::schema::TableSchema;
use crate::db::{self, Tree, TxError};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::{Hash, blake2sum};

/// Hash of an empty subtree.
pub const EMPTY_HASH: Hash = [0; 32];

/// To-do items applied per transaction.
pub const UPDATE_BATCH: usize = 256;
/// After a batch shorter than [`UPDATE_BATCH`], the updater waits this long before the next.
const GATHER: Duration = Duration::from_millis(20);

/// Longest prefix: the length of an item key's hash.
pub const MAX_PREFIX: usize = 32;

/// One node of a partition's Merkle tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MerkleNode {
    /// No item in this subtree (never stored).
    Empty,
    /// `(next byte, child hash)` for every non-empty child, sorted by byte; at least two items below.
    Intermediate(#[serde(with = "pairs")] Vec<(u8, Hash)>),
    /// The only item of this subtree.
    Leaf {
        key: ByteBuf,
        #[serde(with = "serde_bytes")]
        value_hash: Hash,
    },
}

impl Versioned for MerkleNode {
    const MARKER: &'static [u8] = b"GRmerkle01";
    type Previous = NoPrevious;
}

impl MerkleNode {
    /// The node's hash, as listed by its parent ([`EMPTY_HASH`] for an empty node).
    pub fn hash(&self) -> Hash {
        match self {
            MerkleNode::Empty => EMPTY_HASH,
            MerkleNode::Leaf { key, value_hash } => {
                let mut b = Vec::with_capacity(1 + 4 + key.len() + 32);
                b.push(b'L');
                b.extend_from_slice(&(key.len() as u32).to_be_bytes());
                b.extend_from_slice(key);
                b.extend_from_slice(value_hash);
                blake2sum(&b)
            }
            MerkleNode::Intermediate(children) => {
                let mut b = Vec::with_capacity(1 + 33 * children.len());
                b.push(b'I');
                for (c, h) in children {
                    b.push(*c);
                    b.extend_from_slice(h);
                }
                blake2sum(&b)
            }
        }
    }

    fn leaf(key: &[u8], value_hash: Hash) -> MerkleNode {
        MerkleNode::Leaf {
            key: ByteBuf::from(key.to_vec()),
            value_hash,
        }
    }
}

/// Compact serde for lists of `(byte, hash)`: one byte string of 33-byte records (intermediate nodes,
/// root hashes by partition).
pub mod pairs {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::ByteBuf;

    use crate::util::hash::Hash;

    pub fn serialize<S: Serializer>(v: &[(u8, Hash)], s: S) -> Result<S::Ok, S::Error> {
        let mut b = Vec::with_capacity(33 * v.len());
        for (c, h) in v {
            b.push(*c);
            b.extend_from_slice(h);
        }
        s.serialize_bytes(&b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u8, Hash)>, D::Error> {
        let b = ByteBuf::deserialize(d)?;
        if b.len() % 33 != 0 {
            return Err(D::Error::custom(
                "(byte, hash) list: length not a multiple of 33",
            ));
        }
        Ok(b.chunks_exact(33)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(&c[1..]);
                (c[0], h)
            })
            .collect())
    }
}

/// Database key of the node at `prefix` in `partition`'s tree.
pub fn node_key(partition: u8, prefix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + prefix.len());
    k.push(partition);
    k.extend_from_slice(prefix);
    k
}

/// First key after every key starting with `prefix` (None if there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xff {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

fn decode_node(name: &'static str, bytes: &[u8]) -> Result<MerkleNode, TableError> {
    MerkleNode::decode(bytes).map_err(|e| TableError::Decode(name, format!("Merkle node: {e}")))
}

fn encode_node(name: &'static str, node: &MerkleNode) -> Result<Vec<u8>, TableError> {
    node.encode()
        .map_err(|e| TableError::Decode(name, format!("Merkle node: {e}")))
}

/// Keeps the Merkle trees of one table up to date from its `merkle_todo` tree, and reads them.
pub struct MerkleUpdater<F: TableSchema> {
    data: Arc<TableData<F>>,
    /// `<table>:merkle`.
    pub merkle: Tree,
}

impl<F: TableSchema> MerkleUpdater<F> {
    pub fn new(data: &Arc<TableData<F>>) -> Result<Arc<MerkleUpdater<F>>, TableError> {
        let merkle = data.db.open_tree(format!("{}:merkle", F::TABLE_NAME))?;
        Ok(Arc::new(MerkleUpdater {
            data: data.clone(),
            merkle,
        }))
    }

    /// The node at `prefix` of `partition`'s tree ([`MerkleNode::Empty`] if absent).
    pub fn get_node(&self, partition: u8, prefix: &[u8]) -> Result<MerkleNode, TableError> {
        match self.merkle.get(node_key(partition, prefix))? {
            Some(b) => decode_node(F::TABLE_NAME, &b),
            None => Ok(MerkleNode::Empty),
        }
    }

    /// Hash of `partition`'s tree ([`EMPTY_HASH`] when the partition holds nothing here).
    pub fn root_hash(&self, partition: u8) -> Result<Hash, TableError> {
        Ok(self.get_node(partition, &[])?.hash())
    }

    /// Every item `(key, value hash)` of the subtree at `prefix`, in tree order (for tests and small
    /// subtrees; see [`MerkleUpdater::subtree_page`]).
    pub fn subtree_items(
        &self,
        partition: u8,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Hash)>, TableError> {
        let mut out = vec![];
        let mut cursor = None;
        loop {
            let (items, next) = self.subtree_page(partition, prefix, cursor.as_deref(), 1024)?;
            out.extend(items);
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Up to `limit` items of the subtree at `prefix`, in tree order, after the node key `after` (a
    /// cursor returned by the previous page). Returns the items and the cursor of the next page (None at
    /// the end).
    #[allow(clippy::type_complexity)]
    pub fn subtree_page(
        &self,
        partition: u8,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<(Vec<u8>, Hash)>, Option<Vec<u8>>), TableError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let start = node_key(partition, prefix);
        let end = match prefix_end(&start) {
            Some(e) => Excluded(e),
            None => Unbounded,
        };
        let low = match after {
            Some(a) if a >= &start[..] => Excluded(a.to_vec()),
            _ => Included(start),
        };
        let mut out = vec![];
        for item in self.merkle.range((low, end))? {
            let (nk, v) = item?;
            if let MerkleNode::Leaf { key, value_hash } = decode_node(F::TABLE_NAME, &v)? {
                out.push((key.into_vec(), value_hash));
                if out.len() >= limit {
                    return Ok((out, Some(nk)));
                }
            }
        }
        Ok((out, None))
    }

    /// Changes not yet applied to the trees.
    pub fn todo_len(&self) -> Result<usize, TableError> {
        Ok(self.data.merkle_todo.len()?)
    }

    /// Whether every recorded change has been applied to the trees.
    pub fn is_drained(&self) -> Result<bool, TableError> {
        Ok(self.data.merkle_todo.first()?.is_none())
    }

    /// Apply up to `max` pending changes in one transaction; returns how many to-do entries were looked at
    /// (0: nothing to do).
    pub fn update_batch(&self, max: usize) -> Result<usize, TableError> {
        let mut keys = Vec::new();
        for item in self.data.merkle_todo.iter()?.take(max) {
            keys.push(item?.0);
        }
        self.apply_keys(&keys)?;
        Ok(keys.len())
    }

    /// Apply the pending changes of `keys` (picked from the to-do tree earlier) in one transaction.
    fn apply_keys(&self, keys: &[Vec<u8>]) -> Result<(), TableError> {
        if keys.is_empty() {
            return Ok(());
        }
        let todo = &self.data.merkle_todo;
        // Lazy (no fsync of its own): the tree is derived data, and a crash keeps a prefix of the
        // commits, so the to-do entries a lost commit removed come back with it and are applied again.
        // (It was a durable commit per batch, one after each write under load.)
        let res = self.data.db.transaction_lazy(|tx| {
            for k in keys {
                // Read inside the transaction: this is the newest change of `k` (entries change in
                // serialized transactions), and it is removed below in the same transaction, so a newer
                // change can only come after, and then stays in the to-do tree.
                let Some(v) = tx.get(todo, k)? else {
                    continue; // applied meanwhile by another pass
                };
                self.apply_in_tx(tx, k, &v)?;
                tx.remove(todo, k)?;
            }
            Ok(())
        });
        res.map_err(|e| match e {
            TxError::Abort(e) => e,
            TxError::Db(e) => TableError::Db(e),
        })
    }

    /// Apply pending changes until none is left or `max` were processed; returns whether the to-do tree
    /// was seen empty.
    pub fn update_all(&self, max: usize) -> Result<bool, TableError> {
        let mut done = 0;
        while done < max {
            let n = self.update_batch(UPDATE_BATCH.min(max - done))?;
            if n == 0 {
                return Ok(true);
            }
            done += n;
        }
        self.is_drained()
    }

    /// Apply one to-do value (`vh`, or empty for a removal) of item `k`.
    fn apply_in_tx(
        &self,
        tx: &mut db::Tx<'_>,
        k: &[u8],
        todo_value: &[u8],
    ) -> Result<(), TxError<TableError>> {
        let new_vh: Option<Hash> = match todo_value.len() {
            0 => None,
            32 => {
                let mut h = [0u8; 32];
                h.copy_from_slice(todo_value);
                Some(h)
            }
            n => {
                // Not written by this release: recompute from what is stored.
                tracing::warn!(
                    "table {}: Merkle to-do value of {n} bytes, recomputing it",
                    F::TABLE_NAME
                );
                tx.get(&self.data.store, k)?.map(|b| blake2sum(&b))
            }
        };
        let Some(&partition) = k.first() else {
            tracing::warn!("table {}: empty key in the Merkle to-do", F::TABLE_NAME);
            return Ok(());
        };
        let khash = blake2sum(k);
        let mut nk = vec![partition];
        self.update_rec(tx, &mut nk, &khash, k, new_vh)?;
        Ok(())
    }

    fn read_node_tx(
        &self,
        tx: &mut db::Tx<'_>,
        nk: &[u8],
    ) -> Result<MerkleNode, TxError<TableError>> {
        match tx.get(&self.merkle, nk)? {
            Some(b) => decode_node(F::TABLE_NAME, &b).map_err(TxError::Abort),
            None => Ok(MerkleNode::Empty),
        }
    }

    fn write_node_tx(
        &self,
        tx: &mut db::Tx<'_>,
        nk: &[u8],
        node: &MerkleNode,
    ) -> Result<(), TxError<TableError>> {
        match node {
            MerkleNode::Empty => {
                tx.remove(&self.merkle, nk)?;
            }
            _ => {
                let b = encode_node(F::TABLE_NAME, node).map_err(TxError::Abort)?;
                tx.insert(&self.merkle, nk, b)?;
            }
        }
        Ok(())
    }

    /// Set item `key` (hash `khash`) to `new_vh` (None: remove it) in the subtree whose node key is `nk`
    /// (partition ‖ prefix). Returns the subtree's new hash if it changed.
    fn update_rec(
        &self,
        tx: &mut db::Tx<'_>,
        nk: &mut Vec<u8>,
        khash: &Hash,
        key: &[u8],
        new_vh: Option<Hash>,
    ) -> Result<Option<Hash>, TxError<TableError>> {
        let depth = nk.len() - 1;
        let collision = || {
            TxError::Abort(TableError::Decode(
                F::TABLE_NAME,
                "two Merkle items with the same key hash".into(),
            ))
        };
        let new_node = match self.read_node_tx(tx, nk)? {
            MerkleNode::Empty => match new_vh {
                None => return Ok(None),
                Some(vh) => MerkleNode::leaf(key, vh),
            },
            MerkleNode::Leaf {
                key: lk,
                value_hash: lvh,
            } if lk[..] == key[..] => match new_vh {
                Some(vh) if vh == lvh => return Ok(None),
                Some(vh) => MerkleNode::leaf(key, vh),
                None => MerkleNode::Empty,
            },
            MerkleNode::Leaf {
                key: lk,
                value_hash: lvh,
            } => {
                if new_vh.is_none() {
                    return Ok(None); // removing an item that is not there
                }
                // Two items now: move the existing leaf one level down, then insert below.
                let b = *blake2sum(&lk).get(depth).ok_or_else(collision)?;
                let old = MerkleNode::Leaf {
                    key: lk,
                    value_hash: lvh,
                };
                nk.push(b);
                self.write_node_tx(tx, nk, &old)?;
                nk.pop();
                self.write_node_tx(tx, nk, &MerkleNode::Intermediate(vec![(b, old.hash())]))?;
                let h = self.update_rec(tx, nk, khash, key, new_vh)?;
                return Ok(Some(match h {
                    Some(h) => h,
                    None => self.read_node_tx(tx, nk)?.hash(),
                }));
            }
            MerkleNode::Intermediate(mut children) => {
                let b = *khash.get(depth).ok_or_else(collision)?;
                nk.push(b);
                let sub = self.update_rec(tx, nk, khash, key, new_vh);
                nk.pop();
                let Some(h) = sub? else {
                    return Ok(None);
                };
                match children.binary_search_by_key(&b, |c| c.0) {
                    Ok(i) if h == EMPTY_HASH => {
                        children.remove(i);
                    }
                    Ok(i) => children[i].1 = h,
                    Err(i) if h != EMPTY_HASH => children.insert(i, (b, h)),
                    Err(_) => return Ok(None),
                }
                match children.len() {
                    0 => MerkleNode::Empty,
                    1 => {
                        // A lone leaf below moves up here: the shape stays canonical.
                        nk.push(children[0].0);
                        let child = self.read_node_tx(tx, nk)?;
                        let up = matches!(child, MerkleNode::Leaf { .. });
                        if up {
                            tx.remove(&self.merkle, &nk[..])?;
                        }
                        nk.pop();
                        if up {
                            child
                        } else {
                            MerkleNode::Intermediate(children)
                        }
                    }
                    _ => MerkleNode::Intermediate(children),
                }
            }
        };
        self.write_node_tx(tx, nk, &new_node)?;
        Ok(Some(new_node.hash()))
    }

    /// Run the updater until the task is aborted: apply pending changes as they come (polling for new
    /// ones every 25 ms when idle, through the table's write counter, and every second regardless).
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let m = me.clone();
                let res = tokio::task::spawn_blocking(move || m.update_batch(UPDATE_BATCH)).await;
                match res {
                    Ok(Ok(0)) => me.idle().await,
                    Ok(Ok(n)) if n >= UPDATE_BATCH => tokio::task::yield_now().await,
                    // A short batch: let changes gather before the next transaction, rather than
                    // run one per write under load (the tree only serves anti-entropy).
                    Ok(Ok(_)) => tokio::time::sleep(GATHER).await,
                    Ok(Err(e)) => {
                        tracing::error!("table {}: Merkle update failed: {e}", F::TABLE_NAME);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::error!("table {}: Merkle update task: {e}", F::TABLE_NAME);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }

    async fn idle(&self) {
        let seen = self.data.writes.load(Ordering::Relaxed);
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if self.data.writes.load(Ordering::Relaxed) != seen {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::db::Db;
    use crate::table::kv::{KvEntry, KvSchema};

    fn updater() -> Arc<MerkleUpdater<KvSchema>> {
        let db = Db::open_mem();
        let data = TableData::new(KvSchema, &db).unwrap();
        MerkleUpdater::new(&data).unwrap()
    }

    /// Record a change as `update_entry` does.
    fn todo(m: &MerkleUpdater<KvSchema>, key: &[u8], vh: Option<Hash>) {
        m.data
            .merkle_todo
            .insert(key, vh.map(|h| h.to_vec()).unwrap_or_default())
            .unwrap();
    }

    fn drain(m: &MerkleUpdater<KvSchema>) {
        assert!(m.update_all(usize::MAX).unwrap());
        assert!(m.is_drained().unwrap());
    }

    fn dump(m: &MerkleUpdater<KvSchema>) -> Vec<(Vec<u8>, Vec<u8>)> {
        m.merkle.iter().unwrap().map(|r| r.unwrap()).collect()
    }

    fn roots(m: &MerkleUpdater<KvSchema>) -> Vec<Hash> {
        (0..=255u8).map(|p| m.root_hash(p).unwrap()).collect()
    }

    /// A key in partition `p` (few partitions, so subtrees get deep).
    fn key(rng: &mut StdRng, partitions: u8) -> Vec<u8> {
        let mut k = vec![rng.gen_range(0..partitions)];
        k.extend((0..31).map(|_| rng.r#gen::<u8>()));
        k.extend(format!("sort{}", rng.gen_range(0..1000)).as_bytes());
        k
    }

    /// Check the canonical shape: every stored node is reachable, intermediate nodes have at least two
    /// items below and list their children's true hashes, and items sit under their key hash's prefix.
    fn check_shape(m: &MerkleUpdater<KvSchema>, p: u8, prefix: &[u8]) -> usize {
        match m.get_node(p, prefix).unwrap() {
            MerkleNode::Empty => 0,
            MerkleNode::Leaf { key, .. } => {
                assert_eq!(key[0], p);
                assert!(blake2sum(&key).starts_with(prefix));
                1
            }
            MerkleNode::Intermediate(ch) => {
                assert!(!ch.is_empty());
                assert!(ch.windows(2).all(|w| w[0].0 < w[1].0));
                let mut n = 0;
                for (b, h) in ch {
                    let mut q = prefix.to_vec();
                    q.push(b);
                    assert_eq!(m.get_node(p, &q).unwrap().hash(), h);
                    n += check_shape(m, p, &q);
                }
                assert!(n >= 2, "intermediate node with one item");
                n
            }
        }
    }

    #[test]
    fn incremental_equals_from_scratch() {
        for seed in 0..20u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let inc = updater();
            let mut model: BTreeMap<Vec<u8>, Hash> = BTreeMap::new();
            let mut keys: Vec<Vec<u8>> = (0..300).map(|_| key(&mut rng, 3)).collect();
            for round in 0..6 {
                keys.shuffle(&mut rng);
                for k in &keys {
                    match rng.gen_range(0..3) {
                        0 => {
                            todo(&inc, k, None);
                            model.remove(k);
                        }
                        _ => {
                            let vh = blake2sum(&[rng.gen_range(0..3u8)]);
                            todo(&inc, k, Some(vh));
                            model.insert(k.clone(), vh);
                        }
                    }
                    // Apply at random points: changes to the same key coalesce in the to-do tree.
                    if rng.gen_ratio(1, 10) {
                        inc.update_batch(rng.gen_range(1..50)).unwrap();
                    }
                }
                drain(&inc);
                let scratch = updater();
                let mut items: Vec<_> = model.iter().collect();
                items.shuffle(&mut rng);
                for (k, vh) in items {
                    todo(&scratch, k, Some(*vh));
                }
                drain(&scratch);
                assert_eq!(roots(&inc), roots(&scratch), "seed {seed} round {round}");
                assert_eq!(dump(&inc), dump(&scratch), "seed {seed} round {round}");
                let mut total = 0;
                for p in 0..3 {
                    total += check_shape(&inc, p, &[]);
                    let mut items = inc.subtree_items(p, &[]).unwrap();
                    items.sort();
                    let want: Vec<_> = model
                        .iter()
                        .filter(|(k, _)| k[0] == p)
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    assert_eq!(items, want);
                }
                assert_eq!(total, model.len());
            }
            // Remove everything: the tree disappears entirely.
            for k in &keys {
                todo(&inc, k, None);
            }
            drain(&inc);
            assert!(dump(&inc).is_empty());
            assert!(roots(&inc).iter().all(|h| *h == EMPTY_HASH));
        }
    }

    #[test]
    fn equal_contents_equal_roots_different_contents_different_roots() {
        let mut rng = StdRng::seed_from_u64(7);
        let items: Vec<(Vec<u8>, Hash)> = (0..500)
            .map(|i| (key(&mut rng, 2), blake2sum(&[i as u8])))
            .collect();
        let a = updater();
        let b = updater();
        for (k, vh) in &items {
            todo(&a, k, Some(*vh));
        }
        let mut shuffled = items.clone();
        shuffled.shuffle(&mut rng);
        for (k, vh) in &shuffled {
            todo(&b, k, Some(*vh));
            b.update_batch(1).unwrap();
        }
        drain(&a);
        drain(&b);
        assert_eq!(roots(&a), roots(&b));
        assert_ne!(a.root_hash(0).unwrap(), EMPTY_HASH);
        assert_eq!(a.root_hash(5).unwrap(), EMPTY_HASH);

        let base = a.root_hash(items[0].0[0]).unwrap();
        // A different version of one item.
        todo(&b, &items[0].0, Some(blake2sum(b"other")));
        drain(&b);
        assert_ne!(b.root_hash(items[0].0[0]).unwrap(), base);
        // Back to the same version: same root again.
        todo(&b, &items[0].0, Some(items[0].1));
        drain(&b);
        assert_eq!(b.root_hash(items[0].0[0]).unwrap(), base);
        // One item missing.
        todo(&b, &items[0].0, None);
        drain(&b);
        assert_ne!(b.root_hash(items[0].0[0]).unwrap(), base);
        // One item more.
        todo(&b, &items[0].0, Some(items[0].1));
        let mut extra = items[0].0.clone();
        extra.push(b'!');
        todo(&b, &extra, Some(items[0].1));
        drain(&b);
        assert_ne!(b.root_hash(items[0].0[0]).unwrap(), base);
        // The other partition is untouched.
        let other = 1 - items[0].0[0];
        assert_eq!(a.root_hash(other).unwrap(), b.root_hash(other).unwrap());
    }

    #[test]
    fn single_item_trees_and_removal_of_absent_items() {
        let m = updater();
        let k = vec![9u8; 40];
        todo(&m, &k, None);
        drain(&m);
        assert!(dump(&m).is_empty());
        todo(&m, &k, Some([1; 32]));
        drain(&m);
        assert_eq!(
            m.get_node(9, &[]).unwrap(),
            MerkleNode::leaf(&k, [1; 32]),
            "one item: the root is a leaf"
        );
        let mut k2 = k.clone();
        k2[39] = 0;
        todo(&m, &k2, None);
        drain(&m);
        assert_eq!(m.get_node(9, &[]).unwrap(), MerkleNode::leaf(&k, [1; 32]));
    }

    #[test]
    fn entries_written_through_table_data_are_in_the_tree() {
        let m = updater();
        for i in 0..200 {
            let v = (i % 7 != 0).then(|| format!("v{i}").into_bytes());
            let e = KvEntry::new(&format!("p{}", i % 5), &format!("k{i}"), v);
            m.data
                .update_entry(&TableData::<KvSchema>::encode(&e).unwrap())
                .unwrap();
        }
        assert_eq!(m.todo_len().unwrap(), 200);
        drain(&m);
        // Every stored entry (tombstones included) is a leaf with the hash of its stored encoding.
        let mut leaves: Vec<(Vec<u8>, Hash)> = vec![];
        for p in 0..=255u8 {
            leaves.extend(m.subtree_items(p, &[]).unwrap());
        }
        leaves.sort();
        let stored: Vec<(Vec<u8>, Hash)> = m
            .data
            .store
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k, blake2sum(&v))
            })
            .collect();
        assert_eq!(leaves, stored);
        // A removal (as after garbage collection) takes the item out.
        let (k, v) = m.data.store.first().unwrap().unwrap();
        assert!(m.data.delete_if_equal(&k, &v).unwrap());
        drain(&m);
        let n: usize = (0..=255u8)
            .map(|p| m.subtree_items(p, &[]).unwrap().len())
            .sum();
        assert_eq!(n, 199);
    }

    #[test]
    fn newer_change_after_processing_is_not_lost() {
        let m = updater();
        let k = vec![3u8; 36];
        // A batch picks the key, and a newer change lands before the batch's transaction: the
        // transaction applies the newest value and removes exactly it.
        todo(&m, &k, Some([1; 32]));
        let picked = vec![k.clone()];
        todo(&m, &k, Some([2; 32]));
        m.apply_keys(&picked).unwrap();
        assert!(m.is_drained().unwrap());
        assert_eq!(m.get_node(3, &[]).unwrap(), MerkleNode::leaf(&k, [2; 32]));
        // A change after the transaction stays to do.
        todo(&m, &k, Some([3; 32]));
        m.apply_keys(&[]).unwrap();
        assert_eq!(m.todo_len().unwrap(), 1);
        drain(&m);
        assert_eq!(m.get_node(3, &[]).unwrap(), MerkleNode::leaf(&k, [3; 32]));
    }

    #[test]
    fn concurrent_writes_and_updates_converge_to_the_store() {
        let m = updater();
        let writer = {
            let d = m.data.clone();
            std::thread::spawn(move || {
                for i in 0..3000u32 {
                    let v = (i % 11 != 0).then(|| i.to_be_bytes().to_vec());
                    let e = KvEntry::new("p", &format!("k{}", i % 97), v);
                    d.update_entry(&TableData::<KvSchema>::encode(&e).unwrap())
                        .unwrap();
                }
            })
        };
        while !writer.is_finished() {
            m.update_batch(7).unwrap();
        }
        writer.join().unwrap();
        drain(&m);
        let mut leaves: Vec<(Vec<u8>, Hash)> = (0..=255u8)
            .flat_map(|p| m.subtree_items(p, &[]).unwrap())
            .collect();
        leaves.sort();
        let stored: Vec<(Vec<u8>, Hash)> = m
            .data
            .store
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k, blake2sum(&v))
            })
            .collect();
        assert_eq!(leaves.len(), 97);
        assert_eq!(leaves, stored);
    }

    #[test]
    fn node_encoding_roundtrip_and_is_compact() {
        let n = MerkleNode::Intermediate((0..=255u8).map(|b| (b, [b; 32])).collect());
        let e = n.encode().unwrap();
        assert!(e.len() < 256 * 33 + 40, "{} bytes", e.len());
        assert_eq!(MerkleNode::decode(&e).unwrap(), n);
        let l = MerkleNode::leaf(b"key", [7; 32]);
        assert_eq!(MerkleNode::decode(&l.encode().unwrap()).unwrap(), l);
        assert_eq!(MerkleNode::Empty.hash(), EMPTY_HASH);
        assert_ne!(l.hash(), MerkleNode::leaf(b"key", [8; 32]).hash());
    }
}
