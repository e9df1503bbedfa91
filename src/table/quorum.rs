//! Quorum calls to replicas.
//!
//! Back of the envelope, for a client in zone A with rf 3 over three zones and consistent quorums
//! (R = W = 2): a write is sent to the three replicas at once and returns after the second
//! acknowledgement, i.e. one round trip to the nearest other zone (the local replica answers without a
//! network hop); a read asks the two nearest replicas (local first) and returns after both answered:
//! again one round trip to the nearest other zone. A replica that fails, or is slower than a deadline
//! derived from the measured round-trip times, makes the read ask the next replica instead of waiting.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::TableError;
use crate::net::{Endpoint, Message, NetError, NodeId, Prio};

/// Send `msg` to every node of every set at once; succeed once each set has `quorum` acknowledgements.
/// Calls still running then finish in the background.
pub async fn write_quorum<M: Message>(
    ep: &Endpoint<M>,
    sets: &[Vec<NodeId>],
    quorum: usize,
    msg: Arc<M>,
    timeout: Duration,
) -> Result<(), TableError> {
    write_quorum_with(sets, quorum, |node| {
        let (ep, msg) = (ep.clone(), msg.clone());
        async move { ep.call(&node, &msg, Prio::Normal, timeout).await.map(drop) }
    })
    .await
}

/// The quorum logic of [`write_quorum`] for any call: `call(node)` is started for every node of every
/// set at once; succeeds once each set has `quorum` successes, fails as soon as one set cannot reach it.
/// Calls still running then finish in the background.
pub async fn write_quorum_with<C, Fut>(
    sets: &[Vec<NodeId>],
    quorum: usize,
    call: C,
) -> Result<(), TableError>
where
    C: Fn(NodeId) -> Fut,
    Fut: Future<Output = Result<(), NetError>> + Send + 'static,
{
    let mut nodes: Vec<NodeId> = sets.iter().flatten().copied().collect();
    nodes.sort();
    nodes.dedup();
    if sets.is_empty() || sets.iter().any(|s| s.len() < quorum) {
        return Err(TableError::NoLayout);
    }
    let mut futs: FuturesUnordered<_> = nodes
        .into_iter()
        .map(|node| {
            let fut = call(node);
            async move { (node, fut.await) }
        })
        .collect();
    let mut acks = vec![0usize; sets.len()];
    let mut fails = vec![0usize; sets.len()];
    let mut errors: Vec<String> = vec![];
    while let Some((node, res)) = futs.next().await {
        let counter = if res.is_ok() { &mut acks } else { &mut fails };
        for (i, s) in sets.iter().enumerate() {
            if s.contains(&node) {
                counter[i] += 1;
            }
        }
        if let Err(e) = res {
            errors.push(format!("{}: {e}", node.short()));
        }
        if acks.iter().all(|a| *a >= quorum) {
            if !futs.is_empty() {
                tokio::spawn(async move { while futs.next().await.is_some() {} });
            }
            return Ok(());
        }
        if let Some(i) = (0..sets.len()).find(|&i| fails[i] > sets[i].len() - quorum) {
            return Err(TableError::Quorum {
                needed: quorum,
                got: acks[i],
                errors,
            });
        }
    }
    Err(TableError::Quorum {
        needed: quorum,
        got: acks.into_iter().min().unwrap_or(0),
        errors,
    })
}

/// Ask the first `quorum` of `nodes` (ordered nearest first); when one fails, or nothing arrived within
/// `hedge_after`, ask the next one too. Returns the first `quorum` answers.
pub async fn read_quorum<M: Message>(
    ep: &Endpoint<M>,
    nodes: &[NodeId],
    quorum: usize,
    msg: Arc<M>,
    timeout: Duration,
    hedge_after: Duration,
) -> Result<Vec<(NodeId, M::Response)>, TableError> {
    if nodes.len() < quorum || quorum == 0 {
        return Err(TableError::NoLayout);
    }
    let call = |node: NodeId| {
        let (ep, msg) = (ep.clone(), msg.clone());
        async move { (node, ep.call(&node, &msg, Prio::Normal, timeout).await) }
    };
    let mut futs = FuturesUnordered::new();
    let mut next = 0;
    while next < quorum {
        futs.push(call(nodes[next]));
        next += 1;
    }
    let mut answers = Vec::with_capacity(quorum);
    let mut errors: Vec<String> = vec![];
    loop {
        let hedge = tokio::time::sleep(hedge_after);
        tokio::select! {
            r = futs.next() => match r {
                Some((node, Ok(resp))) => {
                    answers.push((node, resp));
                    if answers.len() >= quorum {
                        return Ok(answers);
                    }
                }
                Some((node, Err(e))) => {
                    errors.push(format!("{}: {e}", node.short()));
                    if next < nodes.len() {
                        futs.push(call(nodes[next]));
                        next += 1;
                    }
                }
                None => return Err(TableError::Quorum { needed: quorum, got: answers.len(), errors }),
            },
            _ = hedge, if next < nodes.len() => {
                futs.push(call(nodes[next]));
                next += 1;
            }
        }
    }
}

/// How long to wait for a replica before also asking the next one: a few times the slowest measured
/// round trip among those asked, within [20 ms, 1 s].
pub fn hedge_delay(rtts: impl Iterator<Item = Option<Duration>>) -> Duration {
    let worst = rtts
        .map(|r| r.unwrap_or(Duration::from_millis(100)))
        .max()
        .unwrap_or_default();
    (worst * 4 + Duration::from_millis(10)).clamp(Duration::from_millis(20), Duration::from_secs(1))
}
