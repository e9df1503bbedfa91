//! The redb engine: each tree is a redb table `&[u8] -> &[u8]` of the same name.
//!
//! Reads outside transactions share a cached read transaction (with its opened tables), which
//! every successful commit invalidates, so that point reads don't pay for `begin_read` and
//! `open_table` each time, while a read that starts after a write returned always sees it (see
//! [`RedbEngine::read_snap`]). Range iterators are redb `Range<'static>`s, which keep their read
//! transaction alive by reference counting.
//!
//! An I/O error inside redb (a full disk: ENOSPC) poisons the open database: every later operation
//! fails with `PreviousIo` until it is closed and opened again. The engine does that itself
//! ([`RedbEngine::reopen`], at most once per [`REOPEN_INTERVAL`]): once space is back, the node
//! works again without a restart (redb repairs the file on open, back to its last commit).

use std::collections::HashMap;
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, TableError, TableHandle, WriteTransaction,
};

use super::{Error, IDb, ITx, SNAPSHOT_FILE, TxFnResult, TxValueIter, Value, ValueIter};

/// The longest a non-durable commit (every commit with `fsync = false`, a lazy transaction otherwise)
/// stays so before a background flush.
pub const LAZY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// After an I/O error, the least time between two attempts to reopen the database.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(2);
/// Free space the database's file system needs before a reopen is tried: while the disk is still
/// full, the poisoned database is kept (it may still serve reads) rather than closed for an open that
/// would fail.
pub const REOPEN_MIN_FREE: u64 = 4 << 20;

/// Bytes available to the server on the file system holding `path` (None: unknown).
fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero is a valid `statvfs` (plain integers), filled in by the call below.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// An error after which redb needs the database closed and opened again.
fn needs_reopen(e: &Error) -> bool {
    matches!(e, Error::Redb(r) if matches!(**r, redb::Error::Io(_) | redb::Error::PreviousIo))
}

/// The open database, shared with the lazy flusher; None after a failed reopen.
type DbSlot = Arc<RwLock<Option<Arc<Database>>>>;

/// Entries per write transaction when writing a snapshot.
const SNAPSHOT_BATCH: usize = 50_000;

type Def<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;
type RoTable = ReadOnlyTable<&'static [u8], &'static [u8]>;
type RwTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

fn def(name: &str) -> Def<'_> {
    TableDefinition::new(name)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

type Guard<'a> = redb::AccessGuard<'a, &'static [u8]>;

fn kv(r: Result<(Guard<'_>, Guard<'_>), redb::StorageError>) -> Result<(Value, Value), Error> {
    let (k, v) = r?;
    Ok((k.value().to_vec(), v.value().to_vec()))
}

#[derive(Default)]
struct Trees {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, usize>,
}

/// A shared read transaction with the tables opened through it so far.
struct ReadSnap {
    // One slot per tree known when the snapshot was taken; `None` inside: no such table.
    tables: Vec<OnceLock<Option<RoTable>>>,
    txn: ReadTransaction,
}

fn open_ro(txn: &ReadTransaction, name: &str) -> Result<Option<RoTable>, Error> {
    match txn.open_table(def(name)) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl ReadSnap {
    fn with_table<R>(
        &self,
        engine: &RedbEngine,
        id: usize,
        f: impl FnOnce(Option<&RoTable>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        match self.tables.get(id) {
            Some(slot) => {
                if let Some(t) = slot.get() {
                    return f(t.as_ref());
                }
                let t = open_ro(&self.txn, &engine.name(id)?)?;
                // Another thread may have won the race; either value is the same table.
                let _ = slot.set(t);
                f(slot.get().and_then(Option::as_ref))
            }
            None => f(open_ro(&self.txn, &engine.name(id)?)?.as_ref()),
        }
    }
}

/// The background flusher of non-durable commits.
struct LazyFlush {
    dirty: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

pub(crate) struct RedbEngine {
    read_cache: RwLock<Option<Arc<ReadSnap>>>,
    trees: RwLock<Trees>,
    lazy: LazyFlush,
    /// `fsync = false`: every commit is non-durable.
    all_lazy: bool,
    path: PathBuf,
    /// When the database was last reopened after an I/O error.
    last_reopen: Mutex<Option<Instant>>,
    /// How many times it was reopened: an error of an operation begun on an older database does
    /// not reopen the current one.
    generation: std::sync::atomic::AtomicU64,
    // Last: closed after the cached read transaction and the flusher are gone.
    db: DbSlot,
}

/// Create the database file mode 0600 (redb initialises an empty file), or restrict an existing one to
/// 0600: it holds every S3 secret key. A mode that had to be changed is logged.
fn create_private_file(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::util::fs::PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    if let Some(old) = crate::util::fs::restrict_mode(path, crate::util::fs::PRIVATE_FILE_MODE)
        .map_err(|e| Error::io(path, e))?
    {
        tracing::warn!(
            "{} was mode {old:04o} (readable by other users); set it to 0600",
            path.display()
        );
    }
    Ok(())
}

fn durable_commit(db: &Database) -> Result<(), Error> {
    // An empty commit with the default (immediate) durability persists every earlier
    // non-durable commit.
    db.begin_write()?.commit()?;
    Ok(())
}

impl RedbEngine {
    pub(crate) fn open(path: &Path, fsync: bool) -> Result<Arc<RedbEngine>, Error> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        create_private_file(path)?;
        let db: DbSlot = Arc::new(RwLock::new(Some(Arc::new(Database::create(path)?))));
        let lazy = {
            let dirty = Arc::new(AtomicBool::new(false));
            let (stop, rx) = mpsc::channel::<()>();
            let (db2, dirty2) = (db.clone(), dirty.clone());
            let thread = std::thread::Builder::new()
                .name("db-lazy-flush".into())
                .spawn(move || {
                    // Any message or the sender's drop stops the thread.
                    while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(LAZY_FLUSH_INTERVAL)
                    {
                        let current = read(&db2).clone();
                        if let Some(db) = current
                            && dirty2.swap(false, Ordering::AcqRel)
                            && let Err(e) = durable_commit(&db)
                        {
                            dirty2.store(true, Ordering::Release);
                            tracing::warn!("db: lazy flush failed: {e}");
                        }
                    }
                })
                .map_err(|e| Error::io(path, e))?;
            LazyFlush {
                dirty,
                stop: Some(stop),
                thread: Some(thread),
            }
        };
        Ok(Arc::new(RedbEngine {
            read_cache: RwLock::new(None),
            trees: RwLock::new(Trees::default()),
            lazy,
            all_lazy: !fsync,
            path: path.to_path_buf(),
            last_reopen: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            db,
        }))
    }

    /// The open database, reopening it first if a reopen failed before.
    fn db(&self) -> Result<Arc<Database>, Error> {
        if let Some(db) = read(&self.db).as_ref() {
            return Ok(db.clone());
        }
        self.reopen(self.generation());
        read(&self.db)
            .clone()
            .ok_or_else(|| Error::Redb(Box::new(redb::Error::DatabaseClosed)))
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// After `e`, of an operation begun at `generation`: if it is an I/O error, close the database and
    /// open it again (see the module documentation). Gives `e` back.
    fn check_io(&self, e: Error, generation: u64) -> Error {
        if needs_reopen(&e) {
            self.reopen(generation);
        }
        e
    }

    /// Close and reopen the database, at most once per [`REOPEN_INTERVAL`] and only with
    /// [`REOPEN_MIN_FREE`] available. A failed open (a transaction of the old one still lives) leaves
    /// no database: the next operation tries again.
    fn reopen(&self, generation: u64) {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if read(&self.db).is_some()
            && (generation != self.generation()
                || free_space(dir).is_some_and(|f| f < REOPEN_MIN_FREE))
        {
            return;
        }
        {
            let mut last = self
                .last_reopen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut slot = write(&self.db);
        if slot.is_some() && generation != self.generation() {
            return;
        }
        *write(&self.read_cache) = None;
        // Dropping the last handle closes the file and releases its lock (live read transactions
        // then fail with DatabaseClosed); a write transaction still running on it (other threads
        // may hold a handle for a moment) keeps the lock until it ends: wait a little for that.
        drop(slot.take());
        let mut opened = Database::create(&self.path);
        for _ in 0..40 {
            match opened {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    std::thread::sleep(Duration::from_millis(50));
                    opened = Database::create(&self.path);
                }
                _ => break,
            }
        }
        match opened {
            Ok(db) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(
                    "db: {} reopened after an I/O error (disk full?)",
                    self.path.display()
                );
                *slot = Some(Arc::new(db));
            }
            Err(e) => tracing::warn!(
                "db: {} failed an I/O operation and cannot be reopened yet: {e}",
                self.path.display()
            ),
        }
    }

    fn name(&self, id: usize) -> Result<Arc<str>, Error> {
        read(&self.trees)
            .names
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownTree(id))
    }

    /// The shared read transaction. Correctness: a snapshot is only ever created with the cache
    /// write-locked, and every commit clears the cache (write-locked) after it completes. So a
    /// cached snapshot either was taken after the last completed commit, or was taken before it
    /// and is cleared before that commit's caller gets control back: a read started after a
    /// write returned never sees older data. Clearing also bounds how long the cache pins pages.
    fn read_snap(&self) -> Result<Arc<ReadSnap>, Error> {
        if let Some(s) = read(&self.read_cache).as_ref() {
            return Ok(s.clone());
        }
        // The database handle first: getting it may reopen the database, which clears the cache
        // (its lock must not be held here).
        let generation = self.generation();
        let db = self.db()?;
        let mut cache = write(&self.read_cache);
        if let Some(s) = cache.as_ref() {
            return Ok(s.clone());
        }
        let txn = match db.begin_read() {
            Ok(txn) if self.generation() == generation => txn,
            // Reopened meanwhile: that handle is closed.
            Ok(_) => return Err(Error::Redb(Box::new(redb::Error::DatabaseClosed))),
            Err(e) => {
                drop(cache);
                return Err(self.check_io(e.into(), generation));
            }
        };
        let n = read(&self.trees).names.len();
        let snap = Arc::new(ReadSnap {
            tables: (0..n).map(|_| OnceLock::new()).collect(),
            txn,
        });
        *cache = Some(snap.clone());
        Ok(snap)
    }

    fn with_table<R>(
        &self,
        id: usize,
        f: impl FnOnce(Option<&RoTable>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.read_snap()?.with_table(self, id, f)
    }

    /// A write transaction, and the database generation it belongs to (for [`Self::commit`]);
    /// non-durable if `lazy` or if the database is.
    fn begin_write(&self, lazy: bool) -> Result<(WriteTransaction, u64, bool), Error> {
        let generation = self.generation();
        let mut txn = self
            .db()?
            .begin_write()
            .map_err(|e| self.check_io(e.into(), generation))?;
        let lazy = lazy || self.all_lazy;
        if lazy {
            txn.set_durability(Durability::None)?;
        }
        Ok((txn, generation, lazy))
    }

    fn commit(&self, txn: WriteTransaction, generation: u64, lazy: bool) -> Result<(), Error> {
        txn.commit()
            .map_err(|e| self.check_io(e.into(), generation))?;
        if lazy {
            self.lazy.dirty.store(true, Ordering::Release);
        }
        *write(&self.read_cache) = None;
        Ok(())
    }

    /// Runs `f` on table `id` in its own write transaction, committed if `f` succeeds.
    fn write_op<R>(
        &self,
        id: usize,
        f: impl FnOnce(&mut RwTable<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let name = self.name(id)?;
        let (txn, generation, lazy) = self.begin_write(false)?;
        let r = {
            let mut table = txn.open_table(def(&name))?;
            f(&mut table)
        };
        match r {
            Ok(r) => {
                self.commit(txn, generation, lazy)?;
                Ok(r)
            }
            Err(e) => {
                if let Err(e2) = txn.abort() {
                    tracing::warn!("db: abort failed: {e2}");
                }
                Err(self.check_io(e, generation))
            }
        }
    }
}

impl Drop for RedbEngine {
    fn drop(&mut self) {
        *write(&self.read_cache) = None;
        drop(self.lazy.stop.take());
        if let Some(t) = self.lazy.thread.take() {
            let _ = t.join();
        }
        // Dropping `db` (now its only owner) closes the database, which also makes any pending
        // non-durable commit durable.
    }
}

/// An owned range iterator; keeps the shared read snapshot alive.
struct RedbIter {
    inner: Option<redb::Range<'static, &'static [u8], &'static [u8]>>,
    rev: bool,
    _snap: Arc<ReadSnap>,
}

impl Iterator for RedbIter {
    type Item = Result<(Value, Value), Error>;
    fn next(&mut self) -> Option<Self::Item> {
        let inner = self.inner.as_mut()?;
        let r = if self.rev {
            inner.next_back()
        } else {
            inner.next()
        };
        r.map(kv)
    }
}

impl IDb for RedbEngine {
    fn engine(&self) -> &'static str {
        "redb"
    }

    fn open_tree(&self, name: &str) -> Result<usize, Error> {
        if let Some(id) = read(&self.trees).ids.get(name) {
            return Ok(*id);
        }
        // Create the table unless it exists. Not under the `trees` lock: a transaction in
        // progress may need it (through `name`) before `begin_write` returns.
        let exists = open_ro(&self.db()?.begin_read()?, name)?.is_some();
        if !exists {
            let (txn, generation, lazy) = self.begin_write(false)?;
            txn.open_table(def(name))?;
            self.commit(txn, generation, lazy)?;
        }
        let mut trees = write(&self.trees);
        if let Some(id) = trees.ids.get(name) {
            return Ok(*id);
        }
        let id = trees.names.len();
        let name: Arc<str> = name.into();
        trees.names.push(name.clone());
        trees.ids.insert(name, id);
        Ok(id)
    }

    fn list_trees(&self) -> Result<Vec<String>, Error> {
        let txn = self.db()?.begin_read()?;
        Ok(txn.list_tables()?.map(|h| h.name().to_string()).collect())
    }

    fn snapshot(&self, dir: &Path) -> Result<PathBuf, Error> {
        let txn = self.db()?.begin_read()?;
        let mut trees = Vec::new();
        for handle in txn.list_tables()? {
            let name = handle.name().to_string();
            let table = txn.open_table(def(&name))?;
            let iter: ValueIter = Box::new(table.range::<&[u8]>(..)?.map(kv));
            trees.push((name, iter));
        }
        let path = write_snapshot(dir, trees)?;
        tracing::debug!(
            "db: snapshot of {} written to {}",
            self.path.display(),
            path.display()
        );
        Ok(path)
    }

    fn flush(&self) -> Result<(), Error> {
        if self.lazy.dirty.swap(false, Ordering::AcqRel)
            && let generation = self.generation()
            && let Err(e) = self.db().and_then(|db| durable_commit(&db))
        {
            self.lazy.dirty.store(true, Ordering::Release);
            return Err(self.check_io(e, generation));
        }
        Ok(())
    }

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error> {
        self.with_table(tree, |t| match t {
            None => Ok(None),
            Some(t) => Ok(t.get(key)?.map(|v| v.value().to_vec())),
        })
    }

    fn len(&self, tree: usize) -> Result<usize, Error> {
        self.with_table(tree, |t| match t {
            None => Ok(0),
            Some(t) => Ok(t.len()? as usize),
        })
    }

    fn first(&self, tree: usize) -> Result<Option<(Value, Value)>, Error> {
        self.with_table(tree, |t| match t {
            None => Ok(None),
            Some(t) => t.first()?.map(|x| kv(Ok(x))).transpose(),
        })
    }

    fn last(&self, tree: usize) -> Result<Option<(Value, Value)>, Error> {
        self.with_table(tree, |t| match t {
            None => Ok(None),
            Some(t) => t.last()?.map(|x| kv(Ok(x))).transpose(),
        })
    }

    fn get_gt(&self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error> {
        self.with_table(tree, |t| match t {
            None => Ok(None),
            Some(t) => t
                .range::<&[u8]>((Bound::Excluded(key), Bound::Unbounded))?
                .next()
                .map(kv)
                .transpose(),
        })
    }

    fn get_lt(&self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error> {
        self.with_table(tree, |t| match t {
            None => Ok(None),
            Some(t) => t
                .range::<&[u8]>((Bound::Unbounded, Bound::Excluded(key)))?
                .next_back()
                .map(kv)
                .transpose(),
        })
    }

    fn range(
        &self,
        tree: usize,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Result<ValueIter, Error> {
        let snap = self.read_snap()?;
        let inner = snap.with_table(self, tree, |t| {
            Ok(t.map(|t| t.range::<&[u8]>((low, high))).transpose()?)
        })?;
        Ok(Box::new(RedbIter {
            inner,
            rev,
            _snap: snap,
        }))
    }

    fn insert(&self, tree: usize, key: &[u8], value: &[u8]) -> Result<Option<Value>, Error> {
        self.write_op(tree, |t| {
            Ok(t.insert(key, value)?.map(|v| v.value().to_vec()))
        })
    }

    fn remove(&self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error> {
        self.write_op(tree, |t| Ok(t.remove(key)?.map(|v| v.value().to_vec())))
    }

    fn transaction(&self, f: &mut dyn FnMut(&mut dyn ITx) -> TxFnResult) -> Result<(), Error> {
        self.run_transaction(false, f)
    }

    fn transaction_lazy(&self, f: &mut dyn FnMut(&mut dyn ITx) -> TxFnResult) -> Result<(), Error> {
        self.run_transaction(true, f)
    }
}

impl RedbEngine {
    fn run_transaction(
        &self,
        lazy: bool,
        f: &mut dyn FnMut(&mut dyn ITx) -> TxFnResult,
    ) -> Result<(), Error> {
        let (txn, generation, lazy) = self.begin_write(lazy)?;
        // If `f` panics, `txn` is dropped without commit during unwinding: redb rolls it back.
        let decision = {
            let mut tx = RedbTx {
                txn: &txn,
                engine: self,
                tables: Vec::new(),
            };
            f(&mut tx)
            // `tx` and its open tables dropped here, as redb requires before commit.
        };
        match decision {
            TxFnResult::Commit => self.commit(txn, generation, lazy),
            TxFnResult::Abort => Ok(txn.abort()?),
        }
    }
}

struct RedbTx<'t> {
    txn: &'t WriteTransaction,
    engine: &'t RedbEngine,
    tables: Vec<Option<RwTable<'t>>>,
}

impl<'t> RedbTx<'t> {
    fn table(&mut self, id: usize) -> Result<&mut RwTable<'t>, Error> {
        if id >= self.tables.len() {
            self.tables.resize_with(id + 1, || None);
        }
        let slot = &mut self.tables[id];
        if slot.is_none() {
            let name = self.engine.name(id)?;
            *slot = Some(self.txn.open_table(def(&name))?);
        }
        Ok(slot.as_mut().expect("just opened"))
    }
}

impl<'t> ITx for RedbTx<'t> {
    fn get(&mut self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error> {
        Ok(self.table(tree)?.get(key)?.map(|v| v.value().to_vec()))
    }

    fn len(&mut self, tree: usize) -> Result<usize, Error> {
        Ok(self.table(tree)?.len()? as usize)
    }

    fn first(&mut self, tree: usize) -> Result<Option<(Value, Value)>, Error> {
        self.table(tree)?.first()?.map(|x| kv(Ok(x))).transpose()
    }

    fn last(&mut self, tree: usize) -> Result<Option<(Value, Value)>, Error> {
        self.table(tree)?.last()?.map(|x| kv(Ok(x))).transpose()
    }

    fn get_gt(&mut self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error> {
        self.table(tree)?
            .range::<&[u8]>((Bound::Excluded(key), Bound::Unbounded))?
            .next()
            .map(kv)
            .transpose()
    }

    fn get_lt(&mut self, tree: usize, key: &[u8]) -> Result<Option<(Value, Value)>, Error> {
        self.table(tree)?
            .range::<&[u8]>((Bound::Unbounded, Bound::Excluded(key)))?
            .next_back()
            .map(kv)
            .transpose()
    }

    fn range<'r>(
        &'r mut self,
        tree: usize,
        low: Bound<&[u8]>,
        high: Bound<&[u8]>,
        rev: bool,
    ) -> Result<TxValueIter<'r>, Error> {
        let table: &'r RwTable<'t> = self.table(tree)?;
        let range = table.range::<&[u8]>((low, high))?;
        Ok(if rev {
            Box::new(range.rev().map(kv))
        } else {
            Box::new(range.map(kv))
        })
    }

    fn insert(&mut self, tree: usize, key: &[u8], value: &[u8]) -> Result<Option<Value>, Error> {
        Ok(self
            .table(tree)?
            .insert(key, value)?
            .map(|v| v.value().to_vec()))
    }

    fn remove(&mut self, tree: usize, key: &[u8]) -> Result<Option<Value>, Error> {
        Ok(self.table(tree)?.remove(key)?.map(|v| v.value().to_vec()))
    }
}

/// Writes `trees` (name and entries in key order, read from one consistent view) as a fresh
/// redb database `dir/SNAPSHOT_FILE`, atomically (temporary file, fsync, rename).
pub(super) fn write_snapshot(
    dir: &Path,
    trees: Vec<(String, ValueIter)>,
) -> Result<PathBuf, Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(SNAPSHOT_FILE);
    if path.exists() {
        return Err(Error::SnapshotExists(path));
    }
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    if tmp.exists() {
        // Left over by an interrupted snapshot.
        fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let res = (|| {
        create_private_file(&tmp)?;
        let db = Database::create(&tmp)?;
        for (name, mut iter) in trees {
            loop {
                let mut txn = db.begin_write()?;
                // Nothing is visible before the rename, which follows a durable commit.
                txn.set_durability(Durability::None)?;
                let mut done = true;
                {
                    let mut table = txn.open_table(def(&name))?;
                    for _ in 0..SNAPSHOT_BATCH {
                        match iter.next() {
                            None => {
                                done = true;
                                break;
                            }
                            Some(kv) => {
                                let (k, v) = kv?;
                                table.insert(k.as_slice(), v.as_slice())?;
                                done = false;
                            }
                        }
                    }
                }
                txn.commit()?;
                if done {
                    break;
                }
            }
        }
        durable_commit(&db)?;
        db.close()?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
        Ok(path.clone())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a full disk does to redb (`Io`, then `PreviousIo` on everything) asks for a reopen; other
    /// errors do not.
    #[test]
    fn io_errors_ask_for_a_reopen() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(needs_reopen(&Error::Redb(Box::new(redb::Error::Io(io)))));
        assert!(needs_reopen(&Error::Redb(Box::new(
            redb::Error::PreviousIo
        ))));
        assert!(!needs_reopen(&Error::Redb(Box::new(
            redb::Error::DatabaseClosed
        ))));
        assert!(!needs_reopen(&Error::Corrupt("x".into())));
    }

    /// A full disk, or the database closed under a request by the reopen that follows, is a
    /// temporary unavailability (the S3 API answers 503, found by the full-disk resilience test,
    /// which saw 500s); a corrupt value is not.
    #[test]
    fn full_disk_and_reopen_errors_are_unavailable() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        for e in [
            redb::Error::Io(io),
            redb::Error::PreviousIo,
            redb::Error::DatabaseClosed,
        ] {
            assert!(Error::Redb(Box::new(e)).is_unavailable());
        }
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(Error::io(Path::new("x"), io).is_unavailable());
        assert!(!Error::Corrupt("x".into()).is_unavailable());
        assert!(!Error::NestedTransaction.is_unavailable());
    }

    /// A reopen (what follows an I/O error once space is back) keeps every committed write, clears
    /// the cached read snapshot, and the engine goes on reading and writing; a reopen asked for by an
    /// operation of an older generation does nothing.
    #[test]
    fn reopen_keeps_data_and_the_engine_works_on() {
        for fsync in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let e = RedbEngine::open(&dir.path().join("db.redb"), fsync).unwrap();
            let t = e.open_tree("t").unwrap();
            e.insert(t, b"a", b"1").unwrap();
            assert_eq!(e.get(t, b"a").unwrap().as_deref(), Some(&b"1"[..]));
            let g = e.generation();
            e.reopen(g);
            assert_eq!(e.generation(), g + 1, "reopened");
            assert_eq!(e.get(t, b"a").unwrap().as_deref(), Some(&b"1"[..]));
            e.insert(t, b"b", b"2").unwrap();
            assert_eq!(e.get(t, b"b").unwrap().as_deref(), Some(&b"2"[..]));
            // A stale generation's error: no second reopen.
            *e.last_reopen.lock().unwrap() = None;
            e.reopen(g);
            assert_eq!(e.generation(), g + 1);
            e.flush().unwrap();
        }
    }

    /// With `fsync = true`, a lazy transaction commits without waiting for the disk, and the
    /// background flusher makes it durable within the interval; a durable commit leaves nothing to
    /// flush. Both survive a close and reopen.
    #[test]
    fn lazy_transactions_are_flushed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let e = RedbEngine::open(&path, true).unwrap();
        let t = e.open_tree("t").unwrap();
        e.insert(t, b"durable", b"1").unwrap();
        assert!(!e.lazy.dirty.load(Ordering::Acquire), "a durable commit");
        e.transaction_lazy(&mut |tx: &mut dyn ITx| match tx.insert(t, b"lazy", b"2") {
            Ok(_) => TxFnResult::Commit,
            Err(_) => TxFnResult::Abort,
        })
        .unwrap();
        assert!(
            e.lazy.dirty.load(Ordering::Acquire),
            "a lazy commit waits for a flush"
        );
        assert_eq!(e.get(t, b"lazy").unwrap().as_deref(), Some(&b"2"[..]));
        let deadline = Instant::now() + LAZY_FLUSH_INTERVAL * 5;
        while e.lazy.dirty.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(e);
        let e = RedbEngine::open(&path, true).unwrap();
        let t = e.open_tree("t").unwrap();
        assert_eq!(e.get(t, b"durable").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(e.get(t, b"lazy").unwrap().as_deref(), Some(&b"2"[..]));
    }
}
