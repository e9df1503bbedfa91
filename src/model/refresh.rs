//! Bounded refreshes of the key table for access key ids this node's copy does not know (see
//! [`super::Model::key_for_request`]).
//!
//! Anyone can send a request with a made-up key id, before any signature is checked: each miss must not
//! cost a majority read. But a real key can be missing from the local copy too (created a moment ago
//! through another node, or a node whose copy is being rebuilt after a layout change), and then many
//! requests with that id arrive at once. So:
//! - **one read per id**: requests for an id whose read is under way wait for that read, and its answer
//!   is reused for [`RECENT`] after it ends (found or not), so a burst costs one read;
//! - **a budget for distinct ids**: at most [`MAX_IN_FLIGHT`] reads under way, and new reads start at
//!   most [`STARTS_PER_SEC`] per second on average (bursts of [`BURST`]): made-up ids, whatever their
//!   rate, cost the cluster that trickle, and a request refused by the budget is answered from the local
//!   copy (as unknown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// How long a finished read's answer is reused for its id.
pub const RECENT: Duration = Duration::from_secs(1);
/// Most reads under way at once (distinct ids). Small: when a majority is unreachable a read lasts
/// until its timeout, and every request that starts one waits for it (at most 1 s); the others are
/// answered from the local copy at once.
pub const MAX_IN_FLIGHT: usize = 2;
/// Reads started per second, on average.
pub const STARTS_PER_SEC: f64 = 4.0;
/// Reads that may start at once after a quiet time.
pub const BURST: f64 = 4.0;

type Read<T> = Shared<BoxFuture<'static, Option<T>>>;

enum Flight<T: Clone> {
    Running(Read<T>),
    Done(Instant, Option<T>),
}

struct Inner<T: Clone> {
    flights: HashMap<String, Flight<T>>,
    tokens: f64,
    refilled: Instant,
}

/// See the module doc. `T` is what a read finds (a key).
pub struct Refresher<T: Clone> {
    inner: Mutex<Inner<T>>,
}

impl<T: Clone + Send + Sync + 'static> Refresher<T> {
    pub fn new() -> Arc<Refresher<T>> {
        Arc::new(Refresher {
            inner: Mutex::new(Inner {
                flights: HashMap::new(),
                tokens: BURST,
                refilled: Instant::now(),
            }),
        })
    }

    /// The answer of a read for `id`: the one under way or just finished, else a new one made by
    /// `read` if the budget allows (None if it does not). The read is driven in the background: a
    /// caller that stops waiting does not cancel it.
    pub fn read(
        self: &Arc<Self>,
        id: &str,
        read: impl FnOnce() -> BoxFuture<'static, Option<T>>,
    ) -> Option<BoxFuture<'static, Option<T>>> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .flights
            .retain(|_, f| !matches!(f, Flight::Done(at, _) if now.duration_since(*at) >= RECENT));
        match inner.flights.get(id) {
            Some(Flight::Running(r)) => return Some(r.clone().boxed()),
            Some(Flight::Done(_, v)) => {
                let v = v.clone();
                return Some(async move { v }.boxed());
            }
            None => {}
        }
        let elapsed = now.duration_since(inner.refilled).as_secs_f64();
        inner.tokens = (inner.tokens + elapsed * STARTS_PER_SEC).min(BURST);
        inner.refilled = now;
        let running = inner
            .flights
            .values()
            .filter(|f| matches!(f, Flight::Running(_)))
            .count();
        if running >= MAX_IN_FLIGHT || inner.tokens < 1.0 {
            return None;
        }
        inner.tokens -= 1.0;
        let (me, key) = (self.clone(), id.to_string());
        let fut = read();
        let shared: Read<T> = async move {
            let found = fut.await;
            let mut inner = me.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner
                .flights
                .insert(key, Flight::Done(Instant::now(), found.clone()));
            found
        }
        .boxed()
        .shared();
        inner
            .flights
            .insert(id.to_string(), Flight::Running(shared.clone()));
        drop(inner);
        tokio::spawn(shared.clone());
        Some(shared.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(reads: &Arc<AtomicUsize>, value: Option<u32>) -> BoxFuture<'static, Option<u32>> {
        let reads = reads.clone();
        async move {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            value
        }
        .boxed()
    }

    /// A burst of requests for one id costs one read, and every one of them gets its answer (the bug
    /// the layout-change scenario found: all but the first were answered "unknown key").
    #[tokio::test]
    async fn a_burst_for_one_id_shares_one_read() {
        let r = Refresher::<u32>::new();
        let reads = Arc::new(AtomicUsize::new(0));
        let waits: Vec<_> = (0..100)
            .map(|_| r.read("AK1", || counting(&reads, Some(7))).unwrap())
            .collect();
        for w in waits {
            assert_eq!(w.await, Some(7));
        }
        // Just after: the answer is reused.
        assert_eq!(
            r.read("AK1", || counting(&reads, None)).unwrap().await,
            Some(7)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    /// Made-up ids, as fast as they come: at most the burst starts reads, the rest are refused, and
    /// the budget comes back with time.
    #[tokio::test]
    async fn distinct_ids_are_bounded() {
        let r = Refresher::<u32>::new();
        let reads = Arc::new(AtomicUsize::new(0));
        let started: Vec<_> = (0..1000)
            .filter_map(|i| r.read(&format!("fake{i}"), || counting(&reads, None)))
            .collect();
        assert_eq!(started.len(), MAX_IN_FLIGHT.min(BURST as usize));
        for s in started {
            assert_eq!(s.await, None);
        }
        // Tokens refill at STARTS_PER_SEC: after half a second, about two more.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let more = (0..100)
            .filter_map(|i| r.read(&format!("later{i}"), || counting(&reads, None)))
            .count();
        assert!((1..=3).contains(&more), "{more}");
        assert!(reads.load(Ordering::SeqCst) <= MAX_IN_FLIGHT + 3);
    }

    /// A caller that gives up does not cancel the read: its answer is there for the next one.
    #[tokio::test]
    async fn a_read_outlives_its_callers() {
        let r = Refresher::<u32>::new();
        let reads = Arc::new(AtomicUsize::new(0));
        drop(r.read("AK2", || counting(&reads, Some(3))).unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            r.read("AK2", || counting(&reads, None)).unwrap().await,
            Some(3)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }
}
