//! The in-memory engine, for unit tests of the layers above.
//!
//! Each tree is an `Arc<BTreeMap>`, copied on write only while an iterator holds the previous
//! version (`Arc::make_mut`), which gives iterators the same point-in-time semantics as redb.
//! Write transactions are serialized by a mutex and buffer their writes in an overlay applied
//! atomically at commit (under the state's write lock), so readers never see uncommitted data,
//! rolling back is dropping the overlay, and a panicking closure leaves nothing behind.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::iter::Peekable;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{Error, IDb, ITx, TxFnResult, TxValueIter, Value, ValueIter, bounds_empty};

type Map = BTreeMap<Value, Value>;
type Overlay = BTreeMap<Value, Option<Value>>;

/// Entries copied per step by [`MemIter`].
const ITER_BATCH: usize = 128;

#[derive(Default)]
struct State {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, usize>,
    trees: Vec<Arc<Map>>,
}

#[derive(Default)]
pub(crate) struct MemEngine {
    /// Serializes writers (held for a whole transaction).
    writer: Mutex<()>,
    /// Committed state.
    state: RwLock<State>,
}

impl MemEngine {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn tree(&self, id: usize) -> Arc<Map> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        st.trees.get(id).cloned().unwrap_or_default()
    }

    /// Runs `f` on tree `id` as a single write.
    fn write_op<R>(&self, id: usize, f: impl FnOnce(&mut Map) -> R) -> Result<R, Error> {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let tree = st.trees.get_mut(id).ok_or_else(|| Error::UnknownTree(id))?;
        Ok(f(Arc::make_mut(tree)))
    }
}

fn range<'a>(
    map: &'a Map,
    low: Bound<&[u8]>,
    high: Bound<&[u8]>,
) -> std::collections::btree_map::Range<'a, Value, Value> {
    if bounds_empty(low, high) {
        // `BTreeMap::range` panics on such bounds; this range is empty.
        map.range::<[u8], _>((Bound::Excluded(&[][..]), Bound::Included(&[][..])))
    } else {
        map.range::<[u8], _>((low, high))
    }
}

fn owned((k, v): (&Value, &Value)) -> (Value, Value) {
    (k.clone(), v.clone())
}

/// An owned iterator over a version of a tree, copying [`ITER_BATCH`] entries at a time.
struct MemIter {
    map: Arc<Map>,
    low: Bound<Value>,
    high: Bound<Value>,
    rev: bool,
    buf: VecDeque<(Value, Value)>,
    done: bool,
}

fn as_ref(b: &Bound<Value>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn to_owned(b: Bound<&[u8]>) -> Bound<Value> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl MemIter {
    fn refill(&mut self) {
        let r = range(&self.map, as_ref(&self.low), as_ref(&self.high));
        if self.rev {
            self.buf.extend(r.rev().take(ITER_BATCH).map(owned));
        } else {
            self.buf.extend(r.take(ITER_BATCH).map(owned));
        }
        if self.buf.len() < ITER_BATCH {
            self.done = true;
        } else if let Some((k, _)) = self.buf.back() {
            if self.rev {
                self.high = Bound::Excluded(k.clone());
            } else {
                self.low = Bound::Excluded(k.clone());
            }
        }
    }
}

impl Iterator for MemIter {
    type Item = Result<(Value, Value), Error>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            self.refill();
        }
        self.buf.pop_front().map(Ok)
    }
}

impl IDb for MemEngine {
    fn engine(&self) -> &'static str {
        "memory"
    }

    fn open_tree(&self, name: &str) -> Result<usize, Error> {
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = st.ids.get(name) {
            return Ok(*id);
        }
        let id = st.names.len();
        let name: Arc<str> = name.into();
        st.names.push(name.clone());
        st.ids.insert(name, id);
        st.trees.push(Arc::default());
        Ok(id)
    }

    fn list_trees(&self) -> Result<Vec<String>, Error> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(st.names.iter().map(|n| n.to_string()).collect())
    }

    fn snapshot(&self, dir: &Path) -> Result<PathBuf, Error> {
        let trees: Vec<(String, ValueIter)> = {
            let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
            st.names
                .iter()
                .zip(&st.trees)
                .map(|(name, map)| {
                    let iter: ValueIter = Box::new(MemIter {
                        map: map.clone(),
                        low: Bound::Unbounded,
                        high: Bound::Unbounded,
                        rev: false,
                        buf: VecDeque::new(),
                        done: false,
                    });
                    (name.to_string(), iter)
                })
                .collect()
        };
        super::redb_engine::write_snapshot(dir, trees)
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(st.trees.get(tree).and_then(|t| t.get(key)).cloned())
    }

    fn len(&self, tree: usize) -> Result<usize, Error> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(st.trees.get(tree).map_or(0, |t| t.len()))
    }

    fn first(&self, tree: usize) -> Result<Option<(Value, Value)>, Error> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(st
            .trees
            .get(tree)
            .and_then(|t| t.first_key_value())
            .map(owned))
    }

    fn last(&self, tree: usize) -> Result<Option<(Value, Value)>, Error> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(st
            .trees
            .get(tree)
            .and_then(|t| t.last_key_value())
            .map(owned))
    }

    fn get_gt(&self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(st.trees.get(tree).and_then(|t| {
            range(t, Bound::Excluded(key), Bound::Unbounded)
                .next()
                .map(owned)
        }))
    }

    fn get_lt(&self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(st.trees.get(tree).and_then(|t| {
            range(t, Bound::Unbounded, Bound::Excluded(key))
                .next_back()
                .map(owned)
        }))
    }

    fn range(
        &self,
        tree: usize,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Result<ValueIter, Error> {
        Ok(Box::new(MemIter {
            map: self.tree(tree),
            low: to_owned(low),
            high: to_owned(high),
            rev,
            buf: VecDeque::new(),
            done: bounds_empty(low, high),
        }))
    }

    fn insert(&self, tree: usize, key: &[u8], value: &[u8]) -> Result<Option<Value>, Error> {
        self.write_op(tree, |t| t.insert(key.to_vec(), value.to_vec()))
    }

    fn remove(&self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error> {
        self.write_op(tree, |t| t.remove(key))
    }

    fn transaction(&self, f: &mut dyn FnMut(&mut dyn ITx) -> TxFnResult) -> Result<(), Error> {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Stable while we hold the writer lock.
        let base = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .trees
            .clone();
        let mut tx = MemTx {
            base,
            overlay: Vec::new(),
            empty: Map::new(),
        };
        if f(&mut tx) == TxFnResult::Abort {
            return Ok(());
        }
        let MemTx { base, overlay, .. } = tx;
        // Release our references first so that `make_mut` copies only trees that iterators
        // still hold.
        drop(base);
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for (id, ov) in overlay.into_iter().enumerate() {
            if ov.is_empty() {
                continue;
            }
            let Some(tree) = st.trees.get_mut(id) else {
                continue;
            };
            let tree = Arc::make_mut(tree);
            for (k, v) in ov {
                match v {
                    Some(v) => tree.insert(k, v),
                    None => tree.remove(&k),
                };
            }
        }
        Ok(())
    }
}

struct MemTx {
    /// Committed trees when the transaction began.
    base: Vec<Arc<Map>>,
    /// This transaction's writes (`None`: removal), per tree.
    overlay: Vec<Overlay>,
    /// Base of trees created after the transaction began.
    empty: Map,
}

impl MemTx {
    fn base(&self, tree: usize) -> &Map {
        self.base.get(tree).map_or(&self.empty, |t| t)
    }

    fn overlay_mut(&mut self, tree: usize) -> &mut Overlay {
        if tree >= self.overlay.len() {
            self.overlay.resize_with(tree + 1, Overlay::new);
        }
        &mut self.overlay[tree]
    }

    fn merged<'a>(
        &'a self,
        tree: usize,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Merge<'a> {
        let base = range(self.base(tree), low, high);
        let over: OverIter<'a> = match self.overlay.get(tree) {
            Some(ov) if !bounds_empty(low, high) => {
                let r = ov.range::<[u8], _>((low, high));
                if rev { Box::new(r.rev()) } else { Box::new(r) }
            }
            _ => Box::new(std::iter::empty()),
        };
        let base: BaseIter<'a> = if rev {
            Box::new(base.rev())
        } else {
            Box::new(base)
        };
        Merge {
            base: base.peekable(),
            over: over.peekable(),
            rev,
        }
    }
}

type BaseIter<'a> = Box<dyn Iterator<Item = (&'a Value, &'a Value)> + 'a>;
type OverIter<'a> = Box<dyn Iterator<Item = (&'a Value, &'a Option<Value>)> + 'a>;

/// Merges a tree version with a transaction overlay (which wins on equal keys).
struct Merge<'a> {
    base: Peekable<BaseIter<'a>>,
    over: Peekable<OverIter<'a>>,
    rev: bool,
}

impl Iterator for Merge<'_> {
    type Item = (Value, Value);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_base = match (self.base.peek(), self.over.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((bk, _)), Some((ok, _))) => {
                    let ord = bk.cmp(ok);
                    let ord = if self.rev { ord.reverse() } else { ord };
                    match ord {
                        std::cmp::Ordering::Less => true,
                        std::cmp::Ordering::Greater => false,
                        std::cmp::Ordering::Equal => {
                            self.base.next();
                            false
                        }
                    }
                }
            };
            if take_base {
                return self.base.next().map(owned);
            }
            if let Some((k, Some(v))) = self.over.next() {
                return Some((k.clone(), v.clone()));
            }
        }
    }
}

impl ITx for MemTx {
    fn get(&mut self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error> {
        if let Some(v) = self.overlay.get(tree).and_then(|ov| ov.get(key)) {
            return Ok(v.clone());
        }
        Ok(self.base(tree).get(key).cloned())
    }

    fn len(&mut self, tree: usize) -> Result<usize, Error> {
        let base = self.base(tree);
        let mut len = base.len();
        for (k, v) in self.overlay.get(tree).into_iter().flatten() {
            match (base.contains_key(k), v.is_some()) {
                (false, true) => len += 1,
                (true, false) => len -= 1,
                _ => (),
            }
        }
        Ok(len)
    }

    fn first(&mut self, tree: usize) -> Result<Option<(Value, Value)>, Error> {
        Ok(self
            .merged(tree, Bound::Unbounded, Bound::Unbounded, false)
            .next())
    }

    fn last(&mut self, tree: usize) -> Result<Option<(Value, Value)>, Error> {
        Ok(self
            .merged(tree, Bound::Unbounded, Bound::Unbounded, true)
            .next())
    }

    fn get_gt(&mut self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error> {
        Ok(self
            .merged(tree, Bound::Excluded(key), Bound::Unbounded, false)
            .next())
    }

    fn get_lt(&mut self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error> {
        Ok(self
            .merged(tree, Bound::Unbounded, Bound::Excluded(key), true)
            .next())
    }

    fn range<'r>(
        &'r mut self,
        tree: usize,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Result<TxValueIter<'r>, Error> {
        Ok(Box::new(self.merged(tree, low, high, rev).map(Ok)))
    }

    fn insert(&mut self, tree: usize, key: &[u8], value: &[u8]) -> Result<Option<Value>, Error> {
        let old = self.get(tree, key)?;
        self.overlay_mut(tree)
            .insert(key.to_vec(), Some(value.to_vec()));
        Ok(old)
    }

    fn remove(&mut self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error> {
        let old = self.get(tree, key)?;
        if old.is_some() {
            self.overlay_mut(tree).insert(key.to_vec(), None);
        }
        Ok(old)
    }
}
