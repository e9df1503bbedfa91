//! Embedded, transactional key-value storage used by every stateful layer.
//!
//! # What this module offers
//!
//! A database ([`Db`]) holds named *trees* ([`Tree`]): ordered maps from byte keys to byte values
//! (`&[u8]` in, [`Value`] = `Vec<u8>` out), ordered by the raw key bytes. A tree supports point
//! reads, insertion, removal, `len`, `first`/`last`, `get_gt`/`get_lt` and ordered range scans in
//! both directions over any [`KeyRange`] (std ranges or pairs of [`Bound`]s over byte keys).
//! Scans return [`ValueIter`]s, which are owned (`'static + Send`): they read from a consistent
//! point-in-time view taken when the scan started and keep the database open, never borrowing
//! the caller's stack. Writing while iterating is fine (the iterator does not see the writes).
//!
//! [`Db::transaction`] runs a closure atomically over any number of trees: either everything it
//! wrote is committed, or (on `Err`, on a commit failure or on a panic) nothing is. The closure
//! aborts with its own error through [`TxError::Abort`]; database errors arrive as
//! [`TxError::Db`]. Reads through the [`Tx`] see the transaction's own writes. Write
//! transactions are serialized; readers never see uncommitted data. A single
//! `tree.insert`/`tree.remove` outside a transaction is its own transaction.
//!
//! [`Db::snapshot`] writes an online, point-in-time copy of the whole database into a directory
//! (as a redb file named [`SNAPSHOT_FILE`], whatever the source engine) while the database keeps
//! serving.
//!
//! # Trait boundary
//!
//! Engines implement the object-safe traits [`IDb`] (database-level operations, trees designated
//! by a numeric id) and [`ITx`] (operations inside a write transaction). [`Db`] (an
//! `Arc<dyn IDb>`), [`Tree`] and [`Tx`] are the cheap, typed handles everything else uses. Two
//! engines exist:
//! - `redb` ([`Db::open_redb`]), the persistent engine; its file (and a snapshot's) is created mode
//!   0600, and an existing file readable by other users is set back to 0600 (logged): it holds every
//!   S3 secret key;
//! - `memory` ([`Db::open_mem`]), a `BTreeMap`-based volatile engine for unit tests, with the
//!   same semantics (atomic transactions, snapshot-isolated iterators).
//!
//! # Durability
//!
//! With `fsync = true` (config `metadata_fsync`), a write (transaction or single operation) is
//! durable on disk when the call returns (redb `Durability::Immediate`). With `fsync = false`,
//! commits are non-durable (redb `Durability::None`, no fsync) and a background thread makes them
//! durable at most [`LAZY_FLUSH_INTERVAL`] later, as does [`Db::flush`] and closing the database
//! (dropping the last handle). A crash may then lose the commits of the last interval, but the
//! database reopens in a consistent, committed state (never a torn transaction; redb may run a
//! repair pass on that open). redb 4 has no intermediate mode (its former `Eventual` is gone):
//! hence `None` plus the bounded background flush.
//!
//! # Invariant
//!
//! `db` knows nothing about replication, CRDTs or S3: it stores opaque bytes. Encoding, merge
//! semantics and key layout belong to the layers above.
//!
//! # Caveats
//!
//! - Inside a transaction closure, only use the [`Tx`]: calling write methods of [`Tree`],
//!   [`Db::transaction`] or [`Db::open_tree`] on the same database would deadlock (write
//!   transactions are serialized), so they return [`Error::NestedTransaction`] instead. Reading
//!   through a [`Tree`] there is allowed and sees the state before the transaction.
//! - A long-lived iterator pins its snapshot: with redb, pages freed by later writes cannot be
//!   reused until it is dropped. Don't keep iterators around longer than needed.

mod mem_engine;
mod redb_engine;
#[cfg(test)]
mod test_suite;

use std::cell::RefCell;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use redb_engine::LAZY_FLUSH_INTERVAL;

/// A value (or key) as returned by the database.
pub type Value = Vec<u8>;

/// An owned iterator over `(key, value)` pairs, reading from a point-in-time view.
pub type ValueIter = Box<dyn Iterator<Item = Result<(Value, Value), Error>> + Send>;

/// An iterator over `(key, value)` pairs inside a transaction (borrows the transaction).
pub type TxValueIter<'a> = Box<dyn Iterator<Item = Result<(Value, Value), Error>> + 'a>;

/// Result of [`Db::transaction`].
pub type TxResult<R, E> = Result<R, TxError<E>>;

/// File name of the redb database written by [`Db::snapshot`] into the snapshot directory.
pub const SNAPSHOT_FILE: &str = "db.redb";

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error reported by redb.
    #[error("redb: {0}")]
    Redb(#[source] Box<redb::Error>),
    /// A filesystem error outside the engine (creating directories, snapshot files...).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Tree names must be non-empty.
    #[error("invalid tree name {0:?}")]
    InvalidTreeName(String),
    /// No tree with this id in the engine (an engine-level misuse).
    #[error("unknown tree id {0}")]
    UnknownTree(usize),
    /// The tree handle belongs to another database.
    #[error("tree {0:?} belongs to another database")]
    ForeignTree(String),
    /// A write or a transaction was started on a database from inside one of its own
    /// transaction closures, which would deadlock.
    #[error("nested write on a database from inside one of its transactions")]
    NestedTransaction,
    /// The snapshot target already exists.
    #[error("snapshot target {0} already exists")]
    SnapshotExists(PathBuf),
    /// A value stored by a higher layer could not be decoded (written by a newer release, or damaged).
    #[error("undecodable stored value: {0}")]
    Corrupt(String),
}

impl Error {
    /// The database cannot serve for now, through no fault of the request: an I/O error (a full
    /// disk), or the database closed while the engine reopens it after one. The caller may retry
    /// later (the S3 API answers 503), unlike a corrupt value or a misuse.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Redb(e) => matches!(
                **e,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            ),
            Error::Io { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

macro_rules! from_redb_error {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Redb(Box::new(e.into()))
            }
        })*
    };
}
from_redb_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

/// Error of a transaction: the closure aborted with its own error, or the database failed.
#[derive(Debug)]
pub enum TxError<E> {
    /// The closure returned this error; the transaction was rolled back.
    Abort(E),
    /// A database error (in an operation, or when committing); the transaction was rolled back.
    Db(Error),
}

/// The database error of a transaction whose closure aborts with a database error itself.
pub fn flatten(e: TxError<Error>) -> Error {
    match e {
        TxError::Abort(e) | TxError::Db(e) => e,
    }
}

impl<E> From<Error> for TxError<E> {
    fn from(e: Error) -> Self {
        TxError::Db(e)
    }
}

impl<E: fmt::Display> fmt::Display for TxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Abort(e) => write!(f, "transaction aborted: {e}"),
            TxError::Db(e) => write!(f, "transaction failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TxError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TxError::Abort(e) => Some(e),
            TxError::Db(e) => Some(e),
        }
    }
}

impl<E> TxError<E> {
    /// Maps the abort error, keeping database errors.
    pub fn map_abort<F>(self, f: impl FnOnce(E) -> F) -> TxError<F> {
        match self {
            TxError::Abort(e) => TxError::Abort(f(e)),
            TxError::Db(e) => TxError::Db(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engine traits
// ---------------------------------------------------------------------------------------------

/// What the transaction closure asks the engine to do once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxFnResult {
    /// Commit the transaction.
    Commit,
    /// Roll it back.
    Abort,
}

/// A database engine. Trees are designated by the id returned by [`IDb::open_tree`].
///
/// Range methods receive non-empty, well-formed bounds (checked by the handles) but must not
/// panic on others. Returned iterators read from a point-in-time view.
pub trait IDb: Send + Sync {
    /// Short engine name, for diagnostics.
    fn engine(&self) -> &'static str;
    /// Opens (creating if needed) a tree, returning its id. Same name, same id.
    fn open_tree(&self, name: &str) -> Result<usize, Error>;
    /// Names of all trees in the database (including ones not opened by this process).
    fn list_trees(&self) -> Result<Vec<String>, Error>;
    /// Writes a point-in-time copy of the whole database to `dir/SNAPSHOT_FILE`.
    fn snapshot(&self, dir: &Path) -> Result<PathBuf, Error>;
    /// Makes all committed writes durable.
    fn flush(&self) -> Result<(), Error>;

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error>;
    fn len(&self, tree: usize) -> Result<usize, Error>;
    fn first(&self, tree: usize) -> Result<Option<(Value, Value)>, Error>;
    fn last(&self, tree: usize) -> Result<Option<(Value, Value)>, Error>;
    fn get_gt(&self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error>;
    fn get_lt(&self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error>;
    fn range(
        &self,
        tree: usize,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Result<ValueIter, Error>;

    /// Inserts in its own transaction, returning the previous value.
    fn insert(&self, tree: usize, key: &[u8], value: &[u8]) -> Result<Option<Value>, Error>;
    /// Removes in its own transaction, returning the previous value.
    fn remove(&self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error>;

    /// Runs `f` in a write transaction, committing if it returns [`TxFnResult::Commit`] and
    /// rolling back otherwise (or if it panics). `f` is called exactly once, unless beginning
    /// the transaction fails. Errors are those of beginning, committing or rolling back.
    fn transaction(&self, f: &mut dyn FnMut(&mut dyn ITx) -> TxFnResult) -> Result<(), Error>;

    /// Like [`IDb::transaction`], but the commit need not be durable when it returns: it becomes
    /// durable with the next durable commit, or within [`LAZY_FLUSH_INTERVAL`]. A crash
    /// may lose it (never half of it). Engines without durability run a plain transaction.
    fn transaction_lazy(&self, f: &mut dyn FnMut(&mut dyn ITx) -> TxFnResult) -> Result<(), Error> {
        self.transaction(f)
    }
}

/// Operations inside a write transaction (reads see the transaction's own writes).
pub trait ITx {
    fn get(&mut self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error>;
    fn len(&mut self, tree: usize) -> Result<usize, Error>;
    fn first(&mut self, tree: usize) -> Result<Option<(Value, Value)>, Error>;
    fn last(&mut self, tree: usize) -> Result<Option<(Value, Value)>, Error>;
    fn get_gt(&mut self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error>;
    fn get_lt(&mut self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error>;
    fn range<'r>(
        &'r mut self,
        tree: usize,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Result<TxValueIter<'r>, Error>;
    fn insert(&mut self, tree: usize, key: &[u8], value: &[u8]) -> Result<Option<Value>, Error>;
    fn remove(&mut self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error>;
}

// ---------------------------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------------------------

/// A database handle (cheap to clone, `Send + Sync`).
#[derive(Clone)]
pub struct Db(Arc<dyn IDb>);

/// A tree handle (cheap to clone, `Send + Sync`); keeps its database open.
#[derive(Clone)]
pub struct Tree {
    db: Db,
    id: usize,
    name: Arc<str>,
}

/// The view of a transaction given to the closure of [`Db::transaction`].
pub struct Tx<'a> {
    tx: &'a mut dyn ITx,
    db: &'a Db,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Db").field(&self.engine()).finish()
    }
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tree")
            .field("engine", &self.db.engine())
            .field("name", &self.name)
            .finish()
    }
}

thread_local! {
    /// Databases (by address) in a transaction closure on this thread.
    static ACTIVE_TX: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

struct ActiveTxGuard(usize);

impl ActiveTxGuard {
    fn enter(db: usize) -> Self {
        ACTIVE_TX.with(|a| a.borrow_mut().push(db));
        ActiveTxGuard(db)
    }
}

impl Drop for ActiveTxGuard {
    fn drop(&mut self) {
        ACTIVE_TX.with(|a| {
            let mut a = a.borrow_mut();
            if let Some(pos) = a.iter().rposition(|x| *x == self.0) {
                a.remove(pos);
            }
        });
    }
}

impl Db {
    /// Opens (creating it and its parent directories if needed) the redb database at `path`
    /// (a file). See the module documentation for `fsync`.
    pub fn open_redb(path: &Path, fsync: bool) -> Result<Db, Error> {
        Ok(Db(redb_engine::RedbEngine::open(path, fsync)?))
    }

    /// Creates an empty in-memory database (volatile; for tests).
    pub fn open_mem() -> Db {
        Db(Arc::new(mem_engine::MemEngine::new()))
    }

    /// Wraps a custom engine.
    pub fn from_engine(engine: Arc<dyn IDb>) -> Db {
        Db(engine)
    }

    /// Engine name (`"redb"`, `"memory"`), for diagnostics.
    pub fn engine(&self) -> &'static str {
        self.0.engine()
    }

    fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }

    fn check_not_in_tx(&self) -> Result<(), Error> {
        let addr = self.addr();
        if ACTIVE_TX.with(|a| a.borrow().contains(&addr)) {
            Err(Error::NestedTransaction)
        } else {
            Ok(())
        }
    }

    /// Opens (creating if needed) the tree `name` (non-empty).
    pub fn open_tree(&self, name: impl AsRef<str>) -> Result<Tree, Error> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(Error::InvalidTreeName(name.to_string()));
        }
        self.check_not_in_tx()?;
        let id = self.0.open_tree(name)?;
        Ok(Tree {
            db: self.clone(),
            id,
            name: name.into(),
        })
    }

    /// Names of all trees of the database, sorted.
    pub fn list_trees(&self) -> Result<Vec<String>, Error> {
        let mut names = self.0.list_trees()?;
        names.sort();
        Ok(names)
    }

    /// Writes a consistent point-in-time copy of the whole database into `dir` (created if
    /// needed) as the redb file `dir/SNAPSHOT_FILE`, whose path is returned; it can be opened
    /// with [`Db::open_redb`]. Fails if that file exists. The database keeps serving meanwhile.
    pub fn snapshot(&self, dir: &Path) -> Result<PathBuf, Error> {
        self.0.snapshot(dir)
    }

    /// Makes every committed write durable now, lazy ones included (a no-op in memory).
    pub fn flush(&self) -> Result<(), Error> {
        self.0.flush()
    }

    /// Runs `f` atomically: if it returns `Ok`, all its writes are committed together; if it
    /// returns `Err` (or panics, or the commit fails), none are. Write transactions are
    /// serialized (`f` may block other writers: keep it short and never `.await`-dependent).
    ///
    /// ```
    /// # use grenier::db::{Db, TxError};
    /// let db = Db::open_mem();
    /// let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
    /// let r: Result<u32, TxError<String>> = db.transaction(|tx| {
    ///     tx.insert(&a, b"k", b"v")?;
    ///     tx.remove(&b, b"k")?;
    ///     if tx.get(&a, b"k")?.is_none() {
    ///         return Err(TxError::Abort("lost write".into()));
    ///     }
    ///     Ok(1)
    /// });
    /// assert_eq!(r.unwrap(), 1);
    /// ```
    pub fn transaction<R, E, F>(&self, f: F) -> TxResult<R, E>
    where
        F: FnOnce(&mut Tx<'_>) -> TxResult<R, E>,
    {
        self.run_transaction(true, f)
    }

    /// [`Db::transaction`] for bookkeeping a crash may lose (a queue entry taken, a counter reset): the
    /// commit does not wait for the disk. It becomes durable with the next durable commit of any
    /// tree, and within a second at most ([`LAZY_FLUSH_INTERVAL`]). Atomicity holds: after
    /// a crash the transaction is either whole or absent.
    pub fn transaction_lazy<R, E, F>(&self, f: F) -> TxResult<R, E>
    where
        F: FnOnce(&mut Tx<'_>) -> TxResult<R, E>,
    {
        self.run_transaction(false, f)
    }

    fn run_transaction<R, E, F>(&self, durable: bool, f: F) -> TxResult<R, E>
    where
        F: FnOnce(&mut Tx<'_>) -> TxResult<R, E>,
    {
        self.check_not_in_tx()?;
        let mut f = Some(f);
        let mut out: Option<TxResult<R, E>> = None;
        let mut run = |itx: &mut dyn ITx| {
            let Some(f) = f.take() else {
                // The contract is to call us once; never run the closure twice.
                return TxFnResult::Abort;
            };
            let _guard = ActiveTxGuard::enter(self.addr());
            let mut tx = Tx { tx: itx, db: self };
            let r = f(&mut tx);
            let decision = if r.is_ok() {
                TxFnResult::Commit
            } else {
                TxFnResult::Abort
            };
            out = Some(r);
            decision
        };
        let res = match durable {
            true => self.0.transaction(&mut run),
            false => self.0.transaction_lazy(&mut run),
        };
        match (out, res) {
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(TxError::Db(e)),
            (Some(ok), Ok(())) => ok,
            (None, Ok(())) => unreachable!("engine returned without running the transaction"),
        }
    }
}

/// A range of byte keys: any std range (`a..b`, `a..=b`, `a..`, `..b`, `..=b`, `..`) or pair of
/// [`Bound`]s, over keys of any type `K: AsRef<[u8]>` (`&[u8]`, `Vec<u8>`, `[u8; N]`, `&str`...).
///
/// (Unlike `RangeBounds<K>`, this needs no type annotations for `..` or for
/// `(Bound<&[u8]>, Bound<&[u8]>)`.)
pub trait KeyRange {
    fn key_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>);
}

macro_rules! key_range_impl {
    ($($t:ty),*) => {
        $(impl<K: AsRef<[u8]>> KeyRange for $t {
            fn key_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
                (map_bound(self.start_bound()), map_bound(self.end_bound()))
            }
        })*
    };
}
key_range_impl!(
    std::ops::Range<K>,
    std::ops::RangeInclusive<K>,
    std::ops::RangeFrom<K>,
    std::ops::RangeTo<K>,
    std::ops::RangeToInclusive<K>,
    (Bound<K>, Bound<K>)
);

impl KeyRange for std::ops::RangeFull {
    fn key_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (Bound::Unbounded, Bound::Unbounded)
    }
}

impl<R: KeyRange + ?Sized> KeyRange for &R {
    fn key_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (**self).key_bounds()
    }
}

fn map_bound<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether no key can lie within the bounds (inverted, or equal with an excluded end). Engines
/// such as `BTreeMap` panic on such bounds.
pub(crate) fn bounds_empty(low: Bound<&[u8]>, high: Bound<&[u8]>) -> bool {
    match (low, high) {
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l), Bound::Excluded(h))
        | (Bound::Excluded(l), Bound::Included(h))
        | (Bound::Excluded(l), Bound::Excluded(h)) => l >= h,
        _ => false,
    }
}

/// An owned iterator that keeps the database open while it lives.
struct KeepAlive {
    // Declared first: dropped before the database handle.
    inner: ValueIter,
    _db: Db,
}

impl Iterator for KeepAlive {
    type Item = Result<(Value, Value), Error>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

impl Tree {
    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database the tree belongs to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, Error> {
        self.db.0.get(self.id, key.as_ref())
    }

    /// Inserts (own transaction), returning the previous value.
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Value>, Error> {
        self.db.check_not_in_tx()?;
        self.db.0.insert(self.id, key.as_ref(), value.as_ref())
    }

    /// Removes (own transaction), returning the previous value.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, Error> {
        self.db.check_not_in_tx()?;
        self.db.0.remove(self.id, key.as_ref())
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize, Error> {
        self.db.0.len(self.id)
    }

    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// Entry with the smallest key.
    pub fn first(&self) -> Result<Option<(Value, Value)>, Error> {
        self.db.0.first(self.id)
    }

    /// Entry with the largest key.
    pub fn last(&self) -> Result<Option<(Value, Value)>, Error> {
        self.db.0.last(self.id)
    }

    /// Entry with the smallest key strictly greater than `key`.
    pub fn get_gt(&self, key: impl AsRef<[u8]>) -> Result<Option<(Value, Value)>, Error> {
        self.db.0.get_gt(self.id, key.as_ref())
    }

    /// Entry with the largest key strictly smaller than `key`.
    pub fn get_lt(&self, key: impl AsRef<[u8]>) -> Result<Option<(Value, Value)>, Error> {
        self.db.0.get_lt(self.id, key.as_ref())
    }

    /// All entries, in increasing key order.
    pub fn iter(&self) -> Result<ValueIter, Error> {
        self.range_inner(Bound::Unbounded, Bound::Unbounded, false)
    }

    /// All entries, in decreasing key order.
    pub fn iter_rev(&self) -> Result<ValueIter, Error> {
        self.range_inner(Bound::Unbounded, Bound::Unbounded, true)
    }

    /// Entries within `range`, in increasing key order (`tree.range(b"a"..b"c")`,
    /// `tree.range(start.to_vec()..)`, `tree.range((Bound::Excluded(k), Bound::Unbounded))`...).
    /// Inverted ranges are empty.
    pub fn range(&self, range: impl KeyRange) -> Result<ValueIter, Error> {
        let (low, high) = range.key_bounds();
        self.range_inner(low, high, false)
    }

    /// Entries within `range`, in decreasing key order.
    pub fn range_rev(&self, range: impl KeyRange) -> Result<ValueIter, Error> {
        let (low, high) = range.key_bounds();
        self.range_inner(low, high, true)
    }

    fn range_inner(
        &self,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Result<ValueIter, Error> {
        if bounds_empty(low, high) {
            return Ok(Box::new(std::iter::empty()));
        }
        let inner = self.db.0.range(self.id, low, high, rev)?;
        Ok(Box::new(KeepAlive {
            inner,
            _db: self.db.clone(),
        }))
    }
}

impl<'a> Tx<'a> {
    fn id(&self, tree: &Tree) -> Result<usize, Error> {
        if Arc::ptr_eq(&tree.db.0, &self.db.0) {
            Ok(tree.id)
        } else {
            Err(Error::ForeignTree(tree.name.to_string()))
        }
    }

    /// Convenience: `return tx.abort(e)` rolls the transaction back with error `e`.
    pub fn abort<R, E>(&self, e: E) -> TxResult<R, E> {
        Err(TxError::Abort(e))
    }

    pub fn get(&mut self, tree: &Tree, key: impl AsRef<[u8]>) -> Result<Option<Value>, Error> {
        let id = self.id(tree)?;
        self.tx.get(id, key.as_ref())
    }

    /// Inserts, returning the previous value.
    pub fn insert(
        &mut self,
        tree: &Tree,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Value>, Error> {
        let id = self.id(tree)?;
        self.tx.insert(id, key.as_ref(), value.as_ref())
    }

    /// Removes, returning the previous value.
    pub fn remove(&mut self, tree: &Tree, key: impl AsRef<[u8]>) -> Result<Option<Value>, Error> {
        let id = self.id(tree)?;
        self.tx.remove(id, key.as_ref())
    }

    pub fn len(&mut self, tree: &Tree) -> Result<usize, Error> {
        let id = self.id(tree)?;
        self.tx.len(id)
    }

    pub fn is_empty(&mut self, tree: &Tree) -> Result<bool, Error> {
        Ok(self.len(tree)? == 0)
    }

    pub fn first(&mut self, tree: &Tree) -> Result<Option<(Value, Value)>, Error> {
        let id = self.id(tree)?;
        self.tx.first(id)
    }

    pub fn last(&mut self, tree: &Tree) -> Result<Option<(Value, Value)>, Error> {
        let id = self.id(tree)?;
        self.tx.last(id)
    }

    pub fn get_gt(
        &mut self,
        tree: &Tree,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<(Value, Value)>, Error> {
        let id = self.id(tree)?;
        self.tx.get_gt(id, key.as_ref())
    }

    pub fn get_lt(
        &mut self,
        tree: &Tree,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<(Value, Value)>, Error> {
        let id = self.id(tree)?;
        self.tx.get_lt(id, key.as_ref())
    }

    pub fn iter(&mut self, tree: &Tree) -> Result<TxValueIter<'_>, Error> {
        self.range_inner(tree, Bound::Unbounded, Bound::Unbounded, false)
    }

    pub fn iter_rev(&mut self, tree: &Tree) -> Result<TxValueIter<'_>, Error> {
        self.range_inner(tree, Bound::Unbounded, Bound::Unbounded, true)
    }

    /// Entries within `range` (including this transaction's writes), increasing key order.
    pub fn range(&mut self, tree: &Tree, range: impl KeyRange) -> Result<TxValueIter<'_>, Error> {
        let (low, high) = range.key_bounds();
        self.range_inner(tree, low, high, false)
    }

    /// Entries within `range` (including this transaction's writes), decreasing key order.
    pub fn range_rev(
        &mut self,
        tree: &Tree,
        range: impl KeyRange,
    ) -> Result<TxValueIter<'_>, Error> {
        let (low, high) = range.key_bounds();
        self.range_inner(tree, low, high, true)
    }

    fn range_inner(
        &mut self,
        tree: &Tree,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Result<TxValueIter<'_>, Error> {
        let id = self.id(tree)?;
        if bounds_empty(low, high) {
            return Ok(Box::new(std::iter::empty()));
        }
        self.tx.range(id, low, high, rev)
    }
}
