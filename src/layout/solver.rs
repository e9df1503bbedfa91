//! Partition assignment solver: decides which storage nodes hold each of the
//! [`NB_PARTITIONS`] partitions.
//!
//! # Problem
//!
//! Given storage nodes (zone, capacity in bytes), a replication factor `rf` and a zone redundancy
//! `zr`, find for every partition `rf` distinct nodes such that, lexicographically:
//!
//! 1. every partition's replicas span at least `zr` distinct zones (hard constraint);
//! 2. the partition size `s` is maximal, where node `n` may hold at most
//!    `limit_n(s) = min(256, floor(capacity_n / s))` partitions (usable capacity `= 256 * s`);
//! 3. the number of replicas that *move* (node `n` holds partition `p` now but did not in the
//!    previous assignment) is minimal;
//! 4. among those, the loads are as proportional to the capacities as possible: we minimise the
//!    strictly convex `Σ_n load_n (load_n + 1) / (2 capacity_n)`, so that for instance two
//!    equal nodes of a zone that has more room than the zone redundancy lets it use share the
//!    work evenly instead of one of them getting everything;
//! 5. remaining ties are broken by a fixed pseudo-random order of zones and nodes per partition
//!    (a hash of the partition number and node index, no RNG), so the same input always gives the
//!    same output, and the replica sets of different partitions are spread over the cluster.
//!
//! Within a partition's list, a node that is kept stays at its previous position.
//!
//! # Flow formulation (the one of Garage)
//!
//! ```text
//! source ─zr──────▶ p_up   ──1───────▶ (p,z) ──1──▶ node n (in zone z) ──limit_n──▶ sink
//!        ─(rf-zr)─▶ p_down ──(rf-zr)─▶ (p,z)
//! ```
//!
//! An integral flow of value `256·rf` is exactly an assignment: the unit arcs `(p,z)→n` make the
//! nodes of a partition distinct, and `p_up` forces `zr` units into `zr` different zones (each
//! `p_up→(p,z)` arc carries at most one). Conversely, any valid assignment is such a flow (route
//! one replica of `zr` distinct zones through `p_up`, the others through `p_down`).
//!
//! # Step 1: optimal partition size in O(N) per candidate, no flow needed
//!
//! All partitions play the same role in the graph. If a flow of value `256·rf` exists, averaging
//! it over all permutations of the partitions gives a *symmetric* fractional flow of the same
//! value; conversely the max-flow polytope is integral, so a fractional flow of value `256·rf`
//! implies an integral one. A symmetric flow sends `x_n ≤ min(1, limit_n/256)` from every
//! `(p, zone(n))` to `n`; writing `Y_z = Σ_{n∈z} min(1, limit_n/256)`, such `x` exists iff
//! `Σ_z Y_z ≥ rf` and `Σ_z min(1, Y_z) ≥ zr`. Hence, with `L_n = min(256, limit_n)`:
//!
//! ```text
//! feasible(s)  ⇔  Σ_n L_n ≥ 256·rf   and   Σ_z min(256, Σ_{n∈z} L_n) ≥ 256·zr
//! ```
//!
//! Feasibility is monotone in `s`, so a binary search over `s ∈ [1, max capacity]` finds the
//! optimum with ~64 O(N) checks. (The tests verify this closed form against an independent
//! max-flow on the full graph.)
//!
//! # Step 2: minimal moves, by min-cost max-flow
//!
//! With the limits of the optimal `s` fixed, put cost 1 on `(p,z)→n` when `n` did not hold `p`
//! before, 0 otherwise. Every unit of flow crosses exactly one such arc, so the cost of a
//! maximum flow *is* the number of moved replicas, and a min-cost max-flow is an assignment with
//! the fewest moves among all those of optimal size. It is computed by the primal-dual method
//! (successive shortest paths with potentials): Dijkstra on reduced costs, then a Dinic blocking
//! flow on the zero-reduced-cost arcs, repeated. All costs are 0/1, so there are only a handful of
//! phases (the length, in moves, of the shortest augmenting path only grows, and it is small);
//! the first phase is "keep everything that can be kept".
//!
//! # Step 3: balance, without touching the number of moves
//!
//! At the end of step 2 the potentials `π` certify optimality (reduced costs ≥ 0 on every
//! residual arc), so a residual cycle has zero move cost iff all its arcs have zero reduced cost.
//! A cycle `sink → a ⇝ b → sink` shifts one partition from node `a` to node `b`; with the convex
//! cost above it improves the balance iff `(load_b + 1)/cap_b < load_a/cap_a`. We cancel such
//! cycles (BFS on zero-reduced-cost arcs from the most loaded node) until none is left: by the
//! negative-cycle optimality criterion for separable convex costs, the result is then optimal for
//! objective 4 among the move-optimal assignments. Each cancellation strictly decreases the
//! convex objective, so this terminates.
//!
//! # Complexity (back of the envelope)
//!
//! With `N` nodes, `Z` zones and `P = 256`: the graph has `V ≈ P(2 + Z) + N` vertices and
//! `E ≈ P(2 + 2Z + N)` arcs (30 nodes, 6 zones: ~2 100 vertices, ~11 000 arcs). Step 1 is
//! `O(64 N)`. Step 2 is `O(phases · (E log V + Dinic))` with few phases and Dinic on a unit network
//! (`O(E √V)` worst case, near linear here). Step 3 is `O((k + N) · E)` for `k` balancing steps
//! (`k ≤ 256·rf`, in practice a few dozen; a pass that finds nothing shares one traversal between
//! all donors). Measured in release builds: ~2 ms for 30 nodes / 6 zones / rf 3, ~10 ms for 100
//! nodes / 10 zones; see the ignored `timing_report` test.
//!
//! # Consequence worth knowing
//!
//! Objective 3 comes before objective 4: if adding a node does not raise the partition size (e.g.
//! a third node in a zone when `rf = zr = 3` and the other zones have two nodes each, or a small
//! node in a big cluster where the old assignment still fits the new limits), nothing moves and
//! the new node may get no partition at all. That is the minimal-transfer optimum by definition.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Number of partitions of the key space.
pub const NB_PARTITIONS: usize = 256;

/// Largest supported replication factor.
pub const MAX_REPLICATION_FACTOR: usize = 7;

/// A storage node as seen by the solver (gateways are excluded by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Zone (site) of the node.
    pub zone: String,
    /// Capacity in bytes.
    pub capacity: u64,
}

/// Input of [`solve`].
#[derive(Clone, Copy, Debug)]
pub struct SolverInput<'a> {
    /// Storage nodes; assignments refer to them by index.
    pub nodes: &'a [NodeSpec],
    /// Number of replicas of each partition (1..=7).
    pub replication_factor: usize,
    /// Minimum number of distinct zones each partition spans (1..=replication_factor).
    pub zone_redundancy: usize,
    /// Previous assignment: for each of the 256 partitions, indices into `nodes` of the nodes that held it
    /// (nodes that no longer exist are already filtered out by the caller, so a list may be shorter than rf).
    /// None for a first layout.
    pub previous: Option<&'a [Vec<usize>]>,
}

/// Result of [`solve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// [`NB_PARTITIONS`] entries, each exactly `replication_factor` distinct indices into `nodes`.
    pub partitions: Vec<Vec<usize>>,
    /// The optimal partition size `s` in bytes.
    pub partition_size: u64,
    /// `partition_size * NB_PARTITIONS` (saturating).
    pub usable_capacity: u64,
    /// Replicas present in the new assignment but not in `previous` (all of them when `previous` is None).
    pub moved: usize,
}

impl Assignment {
    /// Number of partitions held by each node (indices `>= n_nodes` are ignored).
    pub fn node_loads(&self, n_nodes: usize) -> Vec<usize> {
        let mut loads = vec![0; n_nodes];
        for part in &self.partitions {
            for &n in part {
                if let Some(l) = loads.get_mut(n) {
                    *l += 1;
                }
            }
        }
        loads
    }
}

/// Why no assignment can be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SolverError {
    #[error(
        "replication factor {0} is not supported: it must be between 1 and {max}",
        max = MAX_REPLICATION_FACTOR
    )]
    InvalidReplicationFactor(usize),
    #[error(
        "zone redundancy {zone_redundancy} is invalid with replication factor {replication_factor}: \
         it must be between 1 and the replication factor; set it with \
         `grenier layout config --zone-redundancy <N|max>`"
    )]
    InvalidZoneRedundancy {
        zone_redundancy: usize,
        replication_factor: usize,
    },
    #[error(
        "replication factor {needed} needs at least {needed} storage nodes but the layout has {have}: \
         give a zone and capacity to more nodes with `grenier layout assign <node> -z ZONE -c CAPACITY`"
    )]
    NotEnoughNodes { needed: usize, have: usize },
    #[error(
        "zone redundancy {needed} needs storage nodes in at least {needed} distinct zones but the layout \
         has {have}: assign nodes to more zones with `grenier layout assign`, or lower it with \
         `grenier layout config --zone-redundancy <N>`"
    )]
    NotEnoughZones { needed: usize, have: usize },
    #[error(
        "storage node #{node} has a capacity of 0 bytes: give it a capacity with \
         `grenier layout assign <node> -z ZONE -c CAPACITY` or make it a gateway with `--gateway`"
    )]
    ZeroCapacity { node: usize },
    #[error(
        "the storage nodes' capacities are too small to hold {parts} partitions with replication factor \
         {replication_factor} and zone redundancy {zone_redundancy}: capacities are in bytes, use a \
         suffix such as `-c 500G` or `-c 2T` with `grenier layout assign`",
        parts = NB_PARTITIONS
    )]
    CapacityTooSmall {
        replication_factor: usize,
        zone_redundancy: usize,
    },
    #[error(
        "the previous assignment is malformed ({0}); this is a bug, please report it \
         (`grenier layout history` shows the stored layouts)"
    )]
    InvalidPrevious(String),
    #[error("internal error in the layout solver ({0}); this is a bug, please report it")]
    Internal(String),
}

/// Computes an optimal assignment; see the module documentation.
pub fn solve(input: &SolverInput) -> Result<Assignment, SolverError> {
    let rf = input.replication_factor;
    let zr = input.zone_redundancy;
    let nodes = input.nodes;
    if !(1..=MAX_REPLICATION_FACTOR).contains(&rf) {
        return Err(SolverError::InvalidReplicationFactor(rf));
    }
    if zr == 0 || zr > rf {
        return Err(SolverError::InvalidZoneRedundancy {
            zone_redundancy: zr,
            replication_factor: rf,
        });
    }
    if let Some(node) = nodes.iter().position(|n| n.capacity == 0) {
        return Err(SolverError::ZeroCapacity { node });
    }
    if nodes.len() < rf {
        return Err(SolverError::NotEnoughNodes {
            needed: rf,
            have: nodes.len(),
        });
    }
    let (zone_of, n_zones) = zone_indices(nodes);
    if n_zones < zr {
        return Err(SolverError::NotEnoughZones {
            needed: zr,
            have: n_zones,
        });
    }
    if let Some(prev) = input.previous {
        validate_previous(prev, nodes.len())?;
    }
    let caps: Vec<u64> = nodes.iter().map(|n| n.capacity).collect();
    let problem = Problem {
        caps: &caps,
        zone_of: &zone_of,
        n_zones,
        rf,
        zr,
    };
    if !problem.feasible(1) {
        return Err(SolverError::CapacityTooSmall {
            replication_factor: rf,
            zone_redundancy: zr,
        });
    }
    let s = problem.optimal_partition_size();
    let limits = problem.limits(s);
    let sets = compute_sets(&problem, &limits, input.previous)?;

    let mut moved = 0;
    let mut partitions = Vec::with_capacity(NB_PARTITIONS);
    for (p, set) in sets.into_iter().enumerate() {
        let prev: &[usize] = input.previous.map_or(&[], |prev| &prev[p]);
        moved += set.iter().filter(|n| !prev.contains(n)).count();
        partitions.push(order_like_previous(set, prev, rf));
    }
    Ok(Assignment {
        partitions,
        partition_size: s,
        usable_capacity: s.saturating_mul(NB_PARTITIONS as u64),
        moved,
    })
}

/// Zone index of every node (in order of first appearance) and the number of zones.
fn zone_indices(nodes: &[NodeSpec]) -> (Vec<usize>, usize) {
    let mut names: Vec<&str> = Vec::new();
    let zone_of = nodes
        .iter()
        .map(|n| match names.iter().position(|z| *z == n.zone) {
            Some(i) => i,
            None => {
                names.push(&n.zone);
                names.len() - 1
            }
        })
        .collect();
    (zone_of, names.len())
}

fn validate_previous(prev: &[Vec<usize>], n_nodes: usize) -> Result<(), SolverError> {
    if prev.len() != NB_PARTITIONS {
        return Err(SolverError::InvalidPrevious(format!(
            "{} partitions instead of {NB_PARTITIONS}",
            prev.len()
        )));
    }
    for (p, list) in prev.iter().enumerate() {
        if let Some(&n) = list.iter().find(|&&n| n >= n_nodes) {
            return Err(SolverError::InvalidPrevious(format!(
                "partition {p} refers to node #{n} but there are {n_nodes} nodes"
            )));
        }
    }
    Ok(())
}

/// The parameters that decide feasibility.
struct Problem<'a> {
    caps: &'a [u64],
    zone_of: &'a [usize],
    n_zones: usize,
    rf: usize,
    zr: usize,
}

impl Problem<'_> {
    /// Partitions each node may hold with partition size `s`.
    fn limits(&self, s: u64) -> Vec<usize> {
        self.caps
            .iter()
            .map(|&c| (c / s).min(NB_PARTITIONS as u64) as usize)
            .collect()
    }

    /// Whether an assignment exists with partition size `s` (closed form, see module docs).
    fn feasible(&self, s: u64) -> bool {
        let limits = self.limits(s);
        let mut per_zone = vec![0usize; self.n_zones];
        for (n, &l) in limits.iter().enumerate() {
            per_zone[self.zone_of[n]] += l;
        }
        let total: usize = limits.iter().sum();
        let zoned: usize = per_zone.iter().map(|&l| l.min(NB_PARTITIONS)).sum();
        total >= NB_PARTITIONS * self.rf && zoned >= NB_PARTITIONS * self.zr
    }

    /// Largest feasible `s`; requires `feasible(1)`.
    fn optimal_partition_size(&self) -> u64 {
        let max_cap = self.caps.iter().copied().max().unwrap_or(0);
        // Invariant: feasible(lo), !feasible(hi) (with s > max_cap every limit is 0).
        let (mut lo, mut hi) = (1u64, max_cap.saturating_add(1));
        if self.feasible(hi) {
            // Only possible when max_cap == u64::MAX (saturated): s = u64::MAX is then the answer.
            return hi;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.feasible(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// splitmix64 finaliser: a fixed, well-mixed hash for deterministic tie-breaking.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b)
        .wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the flow network, solves it, and returns the node set of every partition.
fn compute_sets(
    problem: &Problem,
    limits: &[usize],
    previous: Option<&[Vec<usize>]>,
) -> Result<Vec<Vec<usize>>, SolverError> {
    let rf = problem.rf;
    let zr = problem.zr;
    let n_nodes = limits.len();

    // Only nodes that may hold something, and zones that contain such nodes.
    let active: Vec<usize> = (0..n_nodes).filter(|&n| limits[n] > 0).collect();
    let mut zone_nodes: Vec<Vec<usize>> = vec![Vec::new(); problem.n_zones];
    for &n in &active {
        zone_nodes[problem.zone_of[n]].push(n);
    }
    let zones: Vec<usize> = (0..problem.n_zones)
        .filter(|&z| !zone_nodes[z].is_empty())
        .collect();

    let mut b = GraphBuilder::default();
    let source = b.add_vertex();
    let sink = b.add_vertex();
    let mut node_vertex = vec![usize::MAX; n_nodes];
    let mut node_sink_arc = vec![usize::MAX; n_nodes];
    for &n in &active {
        let v = b.add_vertex();
        node_vertex[n] = v;
        node_sink_arc[n] = b.add_arc(v, sink, limits[n] as i32, 0);
    }
    // For every partition, the (p,z)→n arcs with their node, to read the result back.
    let mut part_arcs: Vec<Vec<(usize, usize)>> = Vec::with_capacity(NB_PARTITIONS);
    let mut prev_mask = vec![false; n_nodes];
    for p in 0..NB_PARTITIONS {
        let prev: &[usize] = previous.map_or(&[], |prev| &prev[p]);
        for &n in prev {
            prev_mask[n] = true;
        }
        let up = b.add_vertex();
        let down = b.add_vertex();
        b.add_arc(source, up, zr as i32, 0);
        if rf > zr {
            b.add_arc(source, down, (rf - zr) as i32, 0);
        }
        let mut order = zones.clone();
        order.sort_by_key(|&z| mix(p as u64, (1 << 32) | z as u64));
        let mut arcs = Vec::with_capacity(active.len());
        for z in order {
            let pz = b.add_vertex();
            b.add_arc(up, pz, 1, 0);
            if rf > zr {
                b.add_arc(down, pz, (rf - zr) as i32, 0);
            }
            let mut in_zone = zone_nodes[z].clone();
            in_zone.sort_by_key(|&n| mix(p as u64, n as u64));
            for n in in_zone {
                let cost = i32::from(!prev_mask[n]);
                arcs.push((b.add_arc(pz, node_vertex[n], 1, cost), n));
            }
        }
        part_arcs.push(arcs);
        for &n in prev {
            prev_mask[n] = false;
        }
    }

    let mut g = b.build();
    let mut pot = vec![0i64; g.n_vertices()];
    let flow = g.min_cost_max_flow(source, sink, &mut pot);
    if flow != (NB_PARTITIONS * rf) as i64 {
        return Err(SolverError::Internal(format!(
            "flow {flow} instead of {}",
            NB_PARTITIONS * rf
        )));
    }
    let mut balancer = Balancer {
        sink,
        active: &active,
        node_vertex: &node_vertex,
        node_sink_arc: &node_sink_arc,
        limits,
        caps: problem.caps,
    };
    balancer.run(&mut g, &pot);

    let sets: Vec<Vec<usize>> = part_arcs
        .iter()
        .map(|arcs| {
            arcs.iter()
                .filter(|&&(e, _)| g.cap[e] == 0)
                .map(|&(_, n)| n)
                .collect()
        })
        .collect();
    if let Some((p, set)) = sets.iter().enumerate().find(|(_, s)| s.len() != rf) {
        return Err(SolverError::Internal(format!(
            "partition {p} got {} replicas",
            set.len()
        )));
    }
    Ok(sets)
}

/// Orders a partition's node set: nodes kept from `prev` stay at their previous position when it
/// is below `rf`; the other nodes fill the free positions in the order of `set`.
fn order_like_previous(set: Vec<usize>, prev: &[usize], rf: usize) -> Vec<usize> {
    let mut slots: Vec<Option<usize>> = vec![None; rf];
    let mut placed = vec![false; set.len()];
    for (i, n) in prev.iter().enumerate().take(rf) {
        if let Some(j) = set.iter().position(|m| m == n)
            && !placed[j]
        {
            slots[i] = Some(*n);
            placed[j] = true;
        }
    }
    let mut rest = set
        .iter()
        .zip(&placed)
        .filter(|(_, placed)| !**placed)
        .map(|(n, _)| *n);
    slots
        .into_iter()
        .map(|slot| slot.or_else(|| rest.next()))
        .collect::<Option<Vec<usize>>>()
        .expect("a partition set has exactly rf nodes")
}

// ---------------------------------------------------------------------------------------------
// Flow network

#[derive(Default)]
struct GraphBuilder {
    n: usize,
    from: Vec<usize>,
    to: Vec<u32>,
    cap: Vec<i32>,
    cost: Vec<i32>,
}

impl GraphBuilder {
    fn add_vertex(&mut self) -> usize {
        self.n += 1;
        self.n - 1
    }

    /// Adds arc `u→v` (even id) and its reverse (odd id); returns the forward id.
    fn add_arc(&mut self, u: usize, v: usize, cap: i32, cost: i32) -> usize {
        let e = self.to.len();
        self.from.extend([u, v]);
        self.to.extend([v as u32, u as u32]);
        self.cap.extend([cap, 0]);
        self.cost.extend([cost, -cost]);
        e
    }

    /// Compressed adjacency, keeping insertion order within each vertex (for determinism).
    fn build(self) -> FlowGraph {
        let mut start = vec![0usize; self.n + 1];
        for &u in &self.from {
            start[u + 1] += 1;
        }
        for i in 0..self.n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut adj = vec![0u32; self.from.len()];
        for (e, &u) in self.from.iter().enumerate() {
            adj[fill[u]] = e as u32;
            fill[u] += 1;
        }
        FlowGraph {
            start,
            adj,
            to: self.to,
            cap: self.cap,
            cost: self.cost,
        }
    }
}

/// Residual graph: `cap[e]` is the residual capacity of arc `e`, `e ^ 1` its reverse.
struct FlowGraph {
    start: Vec<usize>,
    adj: Vec<u32>,
    to: Vec<u32>,
    cap: Vec<i32>,
    cost: Vec<i32>,
}

const INF: i64 = i64::MAX / 4;
const UNSEEN: u32 = u32::MAX;

impl FlowGraph {
    fn n_vertices(&self) -> usize {
        self.start.len() - 1
    }

    fn arcs(&self, u: usize) -> impl Iterator<Item = usize> + '_ {
        self.adj[self.start[u]..self.start[u + 1]]
            .iter()
            .map(|&e| e as usize)
    }

    fn reduced_cost(&self, e: usize, u: usize, pot: &[i64]) -> i64 {
        i64::from(self.cost[e]) + pot[u] - pot[self.to[e] as usize]
    }

    /// Residual arc with zero reduced cost.
    fn admissible(&self, e: usize, u: usize, pot: &[i64]) -> bool {
        self.cap[e] > 0 && self.reduced_cost(e, u, pot) == 0
    }

    /// Primal-dual min-cost max-flow. Costs must be non-negative on the initial residual arcs
    /// (so that zero potentials are valid). On return, `pot` certifies optimality: every residual
    /// arc has a non-negative reduced cost.
    fn min_cost_max_flow(&mut self, s: usize, t: usize, pot: &mut [i64]) -> i64 {
        let n = self.n_vertices();
        let mut dist = vec![INF; n];
        let mut level = vec![UNSEEN; n];
        let mut next_arc = vec![0usize; n];
        let mut queue = Vec::with_capacity(n);
        let mut heap = BinaryHeap::new();
        let mut flow = 0;
        loop {
            // Shortest distances with reduced costs (all ≥ 0).
            dist.fill(INF);
            dist[s] = 0;
            heap.push(Reverse((0i64, s)));
            while let Some(Reverse((d, u))) = heap.pop() {
                if d > dist[u] {
                    continue;
                }
                for e in self.arcs(u) {
                    if self.cap[e] > 0 {
                        let v = self.to[e] as usize;
                        let nd = d + self.reduced_cost(e, u, pot);
                        if nd < dist[v] {
                            dist[v] = nd;
                            heap.push(Reverse((nd, v)));
                        }
                    }
                }
            }
            if dist[t] >= INF {
                return flow;
            }
            let cap_d = dist[t];
            for (p, &d) in pot.iter_mut().zip(&dist) {
                *p += d.min(cap_d);
            }
            // Max flow on the admissible (zero reduced cost) subgraph, Dinic style.
            loop {
                level.fill(UNSEEN);
                level[s] = 0;
                queue.clear();
                queue.push(s);
                let mut head = 0;
                while head < queue.len() {
                    let u = queue[head];
                    head += 1;
                    for e in self.arcs(u) {
                        let v = self.to[e] as usize;
                        if level[v] == UNSEEN && self.admissible(e, u, pot) {
                            level[v] = level[u] + 1;
                            queue.push(v);
                        }
                    }
                }
                if level[t] == UNSEEN {
                    break;
                }
                for (u, it) in next_arc.iter_mut().enumerate() {
                    *it = self.start[u];
                }
                flow += self.blocking_flow(s, t, &mut level, &mut next_arc, pot);
            }
        }
    }

    /// Iterative DFS blocking flow on the level graph restricted to admissible arcs.
    fn blocking_flow(
        &mut self,
        s: usize,
        t: usize,
        level: &mut [u32],
        next_arc: &mut [usize],
        pot: &[i64],
    ) -> i64 {
        let mut total = 0i64;
        let mut path: Vec<usize> = Vec::new();
        let mut u = s;
        loop {
            if u == t {
                let f = path.iter().map(|&e| self.cap[e]).min().unwrap_or(0);
                for &e in &path {
                    self.cap[e] -= f;
                    self.cap[e ^ 1] += f;
                }
                total += i64::from(f);
                path.clear();
                u = s;
                continue;
            }
            let mut advanced = false;
            while next_arc[u] < self.start[u + 1] {
                let e = self.adj[next_arc[u]] as usize;
                let v = self.to[e] as usize;
                if level[v] != UNSEEN && level[v] == level[u] + 1 && self.admissible(e, u, pot) {
                    path.push(e);
                    u = v;
                    advanced = true;
                    break;
                }
                next_arc[u] += 1;
            }
            if !advanced {
                if u == s {
                    return total;
                }
                // Dead end: never come back here during this blocking flow.
                level[u] = UNSEEN;
                let e = path.pop().expect("non-source vertex has a parent arc");
                u = self.to[e ^ 1] as usize;
                next_arc[u] += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Balancing (objective 4)

struct Balancer<'a> {
    sink: usize,
    active: &'a [usize],
    node_vertex: &'a [usize],
    node_sink_arc: &'a [usize],
    limits: &'a [usize],
    caps: &'a [u64],
}

/// `a_num / a_den` compared with `b_num / b_den`.
fn cmp_ratio(a_num: usize, a_den: u64, b_num: usize, b_den: u64) -> Ordering {
    (a_num as u128 * b_den as u128).cmp(&(b_num as u128 * a_den as u128))
}

impl Balancer<'_> {
    fn load(&self, g: &FlowGraph, n: usize) -> usize {
        g.cap[self.node_sink_arc[n] ^ 1] as usize
    }

    /// Cancels zero-move-cost cycles `sink → a ⇝ b → sink` that improve the balance, until none
    /// is left. `pot` must certify the optimality of the current flow for the move costs.
    fn run(&mut self, g: &mut FlowGraph, pot: &[i64]) {
        let t = self.sink;
        let n_vertices = g.n_vertices();
        // Vertex → node index, for node vertices.
        let mut vertex_node = vec![usize::MAX; n_vertices];
        for &n in self.active {
            vertex_node[self.node_vertex[n]] = n;
        }
        let mut parent = vec![usize::MAX; n_vertices];
        let mut queue = Vec::with_capacity(n_vertices);
        // Only nodes whose sink arc has zero reduced cost can take part in a zero-cost cycle.
        let tight: Vec<usize> = self
            .active
            .iter()
            .copied()
            .filter(|&n| pot[self.node_vertex[n]] == pot[t])
            .collect();
        'improve: loop {
            let mut donors: Vec<usize> = tight
                .iter()
                .copied()
                .filter(|&n| self.load(g, n) > 0)
                .collect();
            donors.sort_by(|&a, &b| {
                cmp_ratio(self.load(g, b), self.caps[b], self.load(g, a), self.caps[a])
                    .then(a.cmp(&b))
            });
            // Donors are tried from the most loaded (relative to capacity) down, and a vertex
            // reached from an earlier donor is not explored again: whatever node is reachable
            // from it is no better a recipient for a less loaded donor. So a pass that finds
            // nothing to improve costs a single traversal of the graph.
            parent.fill(usize::MAX);
            for &a in &donors {
                let (la, ca) = (self.load(g, a), self.caps[a]);
                let va = self.node_vertex[a];
                if parent[va] != usize::MAX {
                    continue;
                }
                queue.clear();
                queue.push(va);
                parent[va] = usize::MAX - 1;
                let mut head = 0;
                let mut best: Option<usize> = None;
                while head < queue.len() {
                    let u = queue[head];
                    head += 1;
                    let n = vertex_node[u];
                    if n != usize::MAX && n != a && pot[u] == pot[t] {
                        let ln = self.load(g, n);
                        if ln < self.limits[n]
                            && best.is_none_or(|b| {
                                cmp_ratio(ln + 1, self.caps[n], self.load(g, b) + 1, self.caps[b])
                                    == Ordering::Less
                            })
                        {
                            best = Some(n);
                        }
                    }
                    for e in g.arcs(u) {
                        let v = g.to[e] as usize;
                        if v != t && parent[v] == usize::MAX && g.admissible(e, u, pot) {
                            parent[v] = e;
                            queue.push(v);
                        }
                    }
                }
                let Some(b) = best else { continue };
                if cmp_ratio(self.load(g, b) + 1, self.caps[b], la, ca) != Ordering::Less {
                    continue;
                }
                // Shift one unit: sink → a ⇝ b → sink.
                let mut v = self.node_vertex[b];
                while v != va {
                    let e = parent[v];
                    g.cap[e] -= 1;
                    g.cap[e ^ 1] += 1;
                    v = g.to[e ^ 1] as usize;
                }
                let (ea, eb) = (self.node_sink_arc[a], self.node_sink_arc[b]);
                g.cap[ea] += 1;
                g.cap[ea ^ 1] -= 1;
                g.cap[eb] -= 1;
                g.cap[eb ^ 1] += 1;
                continue 'improve;
            }
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const GB: u64 = 1_000_000_000;

    fn node(zone: &str, capacity: u64) -> NodeSpec {
        NodeSpec {
            zone: zone.to_string(),
            capacity,
        }
    }

    fn input<'a>(
        nodes: &'a [NodeSpec],
        rf: usize,
        zr: usize,
        previous: Option<&'a [Vec<usize>]>,
    ) -> SolverInput<'a> {
        SolverInput {
            nodes,
            replication_factor: rf,
            zone_redundancy: zr,
            previous,
        }
    }

    fn limits_at(nodes: &[NodeSpec], s: u64) -> Vec<usize> {
        nodes
            .iter()
            .map(|n| (n.capacity / s).min(NB_PARTITIONS as u64) as usize)
            .collect()
    }

    /// Checks the hard constraints and returns the loads.
    fn check_valid(nodes: &[NodeSpec], rf: usize, zr: usize, a: &Assignment) -> Vec<usize> {
        assert_eq!(a.partitions.len(), NB_PARTITIONS);
        assert_eq!(a.usable_capacity, a.partition_size * NB_PARTITIONS as u64);
        for (p, part) in a.partitions.iter().enumerate() {
            assert_eq!(part.len(), rf, "partition {p}: {part:?}");
            let mut sorted = part.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), rf, "partition {p} has duplicates: {part:?}");
            assert!(part.iter().all(|&n| n < nodes.len()));
            let mut zones: Vec<&str> = part.iter().map(|&n| nodes[n].zone.as_str()).collect();
            zones.sort();
            zones.dedup();
            assert!(
                zones.len() >= zr,
                "partition {p} spans {} zones < {zr}",
                zones.len()
            );
        }
        let loads = a.node_loads(nodes.len());
        for (n, (&l, lim)) in loads
            .iter()
            .zip(limits_at(nodes, a.partition_size))
            .enumerate()
        {
            assert!(l <= lim, "node {n} holds {l} > limit {lim}");
        }
        loads
    }

    fn count_moved(prev: Option<&[Vec<usize>]>, a: &Assignment) -> usize {
        a.partitions
            .iter()
            .enumerate()
            .map(|(p, part)| {
                part.iter()
                    .filter(|n| prev.is_none_or(|prev| !prev[p].contains(n)))
                    .count()
            })
            .sum()
    }

    // --- Independent feasibility check: recursive Ford–Fulkerson on adjacency lists --------

    struct Net {
        adj: Vec<Vec<usize>>,
        to: Vec<usize>,
        cap: Vec<i64>,
        cost: Vec<i64>,
    }

    impl Net {
        fn new(n: usize) -> Self {
            Net {
                adj: vec![Vec::new(); n],
                to: Vec::new(),
                cap: Vec::new(),
                cost: Vec::new(),
            }
        }
        fn arc(&mut self, u: usize, v: usize, cap: i64, cost: i64) -> usize {
            let e = self.to.len();
            self.adj[u].push(e);
            self.to.push(v);
            self.cap.push(cap);
            self.cost.push(cost);
            self.adj[v].push(e + 1);
            self.to.push(u);
            self.cap.push(0);
            self.cost.push(-cost);
            e
        }
        fn dfs(&mut self, u: usize, t: usize, seen: &mut [bool]) -> bool {
            if u == t {
                return true;
            }
            seen[u] = true;
            for i in 0..self.adj[u].len() {
                let e = self.adj[u][i];
                let v = self.to[e];
                if self.cap[e] > 0 && !seen[v] && self.dfs(v, t, seen) {
                    self.cap[e] -= 1;
                    self.cap[e ^ 1] += 1;
                    return true;
                }
            }
            false
        }
    }

    /// Max number of replicas placeable with these per-node limits, by plain augmenting paths on
    /// the per-partition graph (p_down arcs with capacity rf instead of rf - zr, zones ordered
    /// by name): shares no code with the solver.
    fn independent_max_flow(nodes: &[NodeSpec], rf: usize, zr: usize, limits: &[usize]) -> usize {
        let zones: BTreeMap<&str, Vec<usize>> =
            nodes
                .iter()
                .enumerate()
                .fold(BTreeMap::new(), |mut m, (i, n)| {
                    m.entry(n.zone.as_str()).or_default().push(i);
                    m
                });
        let nz = zones.len();
        let (s, t) = (0, 1);
        let node_v = |n: usize| 2 + n;
        let part_base = 2 + nodes.len();
        let per_part = 2 + nz;
        let mut net = Net::new(part_base + NB_PARTITIONS * per_part);
        for (n, &l) in limits.iter().enumerate() {
            net.arc(node_v(n), t, l as i64, 0);
        }
        for p in 0..NB_PARTITIONS {
            let up = part_base + p * per_part;
            let down = up + 1;
            net.arc(s, up, zr as i64, 0);
            net.arc(s, down, (rf - zr) as i64, 0);
            for (zi, members) in zones.values().enumerate() {
                let pz = up + 2 + zi;
                net.arc(up, pz, 1, 0);
                net.arc(down, pz, rf as i64, 0);
                for &n in members {
                    net.arc(pz, node_v(n), 1, 0);
                }
            }
        }
        let mut seen = vec![false; net.adj.len()];
        let mut flow = 0;
        loop {
            seen.fill(false);
            if !net.dfs(s, t, &mut seen) {
                return flow;
            }
            flow += 1;
        }
    }

    /// Independent optimality certificate for the number of moves: builds the residual graph of
    /// the returned assignment (at its partition size) with cost 1 per replica not held before,
    /// and checks with Bellman–Ford that it has no negative cycle, i.e. that no assignment of
    /// the same partition size moves fewer replicas.
    fn assert_moves_optimal(
        nodes: &[NodeSpec],
        rf: usize,
        zr: usize,
        prev: &[Vec<usize>],
        a: &Assignment,
    ) {
        let limits = limits_at(nodes, a.partition_size);
        let loads = a.node_loads(nodes.len());
        let zone_names: Vec<&str> = {
            let mut z: Vec<&str> = nodes.iter().map(|n| n.zone.as_str()).collect();
            z.sort();
            z.dedup();
            z
        };
        let zone_of = |n: usize| zone_names.iter().position(|z| *z == nodes[n].zone).unwrap();
        let nz = zone_names.len();
        let t = 0;
        let node_v = |n: usize| 1 + n;
        let base = 1 + nodes.len();
        let per_part = 2 + nz;
        let nv = base + NB_PARTITIONS * per_part;
        // (u, v, cost) residual arcs.
        let mut arcs: Vec<(usize, usize, i64)> = Vec::new();
        for n in 0..nodes.len() {
            if loads[n] < limits[n] {
                arcs.push((node_v(n), t, 0));
            }
            if loads[n] > 0 {
                arcs.push((t, node_v(n), 0));
            }
        }
        for (p, part) in a.partitions.iter().enumerate() {
            let up = base + p * per_part;
            let down = up + 1;
            let mut count = vec![0usize; nz];
            for &n in part {
                count[zone_of(n)] += 1;
            }
            let mut ups_left = zr;
            for (z, &k) in count.iter().enumerate() {
                let pz = up + 2 + z;
                let u_flow = usize::from(ups_left > 0 && k > 0);
                ups_left -= u_flow;
                let d_flow = k - u_flow;
                if u_flow == 0 {
                    arcs.push((up, pz, 0));
                } else {
                    arcs.push((pz, up, 0));
                }
                if d_flow < rf - zr {
                    arcs.push((down, pz, 0));
                }
                if d_flow > 0 {
                    arcs.push((pz, down, 0));
                }
            }
            for n in 0..nodes.len() {
                let pz = up + 2 + zone_of(n);
                let c = i64::from(!prev[p].contains(&n));
                if part.contains(&n) {
                    arcs.push((node_v(n), pz, -c));
                } else {
                    arcs.push((pz, node_v(n), c));
                }
            }
        }
        let mut dist = vec![0i64; nv];
        for round in 0..=nv {
            let mut changed = false;
            for &(u, v, c) in &arcs {
                if dist[u] + c < dist[v] {
                    dist[v] = dist[u] + c;
                    changed = true;
                }
            }
            if !changed {
                return;
            }
            assert!(
                round < nv,
                "negative cycle: fewer moves than {} are possible",
                a.moved
            );
        }
    }

    // --- Unit tests ------------------------------------------------------------------------

    #[test]
    fn three_nodes_three_zones_rf3() {
        let nodes = [
            node("a", 100 * GB),
            node("b", 100 * GB),
            node("c", 100 * GB),
        ];
        let a = solve(&input(&nodes, 3, 3, None)).unwrap();
        let loads = check_valid(&nodes, 3, 3, &a);
        assert_eq!(loads, vec![256, 256, 256]);
        assert_eq!(a.partition_size, 100 * GB / 256);
        assert_eq!(a.usable_capacity, 100 * GB / 256 * 256);
        assert_eq!(a.moved, 768);
    }

    #[test]
    fn unequal_capacities_rf1() {
        // rf 1: partitions in proportion to capacity; 1:3 split of 256 is 64:192.
        let nodes = [node("a", 100 * GB), node("b", 300 * GB)];
        let a = solve(&input(&nodes, 1, 1, None)).unwrap();
        let loads = check_valid(&nodes, 1, 1, &a);
        assert_eq!(loads, vec![64, 192]);
        assert_eq!(a.partition_size, 100 * GB / 64);
        assert_eq!(a.moved, 256);
    }

    #[test]
    fn unequal_capacities_rf2_one_zone() {
        // Big node can hold each partition once only: 256 on it, 256 shared by the two others
        // in proportion 1:3.
        let nodes = [
            node("z", 1000 * GB),
            node("z", 100 * GB),
            node("z", 300 * GB),
        ];
        let a = solve(&input(&nodes, 2, 1, None)).unwrap();
        let loads = check_valid(&nodes, 2, 1, &a);
        assert_eq!(loads, vec![256, 64, 192]);
        assert_eq!(a.partition_size, 100 * GB / 64);
    }

    #[test]
    fn small_zone_limits_capacity() {
        // rf 3 over 3 zones: every zone holds one copy of everything, so the smallest zone decides.
        let nodes = [
            node("a", 100 * GB),
            node("b", 100 * GB),
            node("c", 100 * GB),
            node("c", 100 * GB),
        ];
        let a = solve(&input(&nodes, 3, 3, None)).unwrap();
        let loads = check_valid(&nodes, 3, 3, &a);
        assert_eq!(a.partition_size, 100 * GB / 256);
        // Zone c's two nodes share its 256 replicas evenly (balancing tie-break).
        assert_eq!(loads, vec![256, 256, 128, 128]);
    }

    #[test]
    fn zone_redundancy_below_zones() {
        // rf 3, zr 2, zones a (2 nodes) and b (1 node): all three nodes hold everything.
        let nodes = [node("a", 10 * GB), node("a", 10 * GB), node("b", 10 * GB)];
        let a = solve(&input(&nodes, 3, 2, None)).unwrap();
        assert_eq!(check_valid(&nodes, 3, 2, &a), vec![256, 256, 256]);
        // rf 2, zr 1 over 2 zones with 4 equal nodes: each holds 128, zones may repeat.
        let nodes = [
            node("a", 10 * GB),
            node("a", 10 * GB),
            node("a", 10 * GB),
            node("b", 10 * GB),
        ];
        let a = solve(&input(&nodes, 2, 1, None)).unwrap();
        assert_eq!(check_valid(&nodes, 2, 1, &a), vec![128, 128, 128, 128]);
        assert_eq!(a.partition_size, 10 * GB / 128);
        // Same with zr 2: zone b's node must be in every partition.
        let a = solve(&input(&nodes, 2, 2, None)).unwrap();
        let loads = check_valid(&nodes, 2, 2, &a);
        assert_eq!(loads[3], 256);
        assert_eq!(a.partition_size, 10 * GB / 256);
    }

    #[test]
    fn errors() {
        let nodes = [node("a", 10 * GB), node("b", 10 * GB)];
        assert_eq!(
            solve(&input(&nodes, 3, 1, None)),
            Err(SolverError::NotEnoughNodes { needed: 3, have: 2 })
        );
        assert_eq!(
            solve(&input(&nodes, 0, 1, None)),
            Err(SolverError::InvalidReplicationFactor(0))
        );
        assert_eq!(
            solve(&input(&nodes, 8, 1, None)),
            Err(SolverError::InvalidReplicationFactor(8))
        );
        assert_eq!(
            solve(&input(&nodes, 2, 3, None)),
            Err(SolverError::InvalidZoneRedundancy {
                zone_redundancy: 3,
                replication_factor: 2
            })
        );
        assert_eq!(
            solve(&input(&nodes, 2, 0, None)),
            Err(SolverError::InvalidZoneRedundancy {
                zone_redundancy: 0,
                replication_factor: 2
            })
        );
        let same_zone = [node("a", 10 * GB), node("a", 10 * GB), node("a", 10 * GB)];
        assert_eq!(
            solve(&input(&same_zone, 3, 2, None)),
            Err(SolverError::NotEnoughZones { needed: 2, have: 1 })
        );
        let zero = [node("a", 10 * GB), node("b", 0)];
        assert_eq!(
            solve(&input(&zero, 1, 1, None)),
            Err(SolverError::ZeroCapacity { node: 1 })
        );
        let tiny = [node("a", 100), node("b", 100)];
        assert_eq!(
            solve(&input(&tiny, 2, 2, None)),
            Err(SolverError::CapacityTooSmall {
                replication_factor: 2,
                zone_redundancy: 2
            })
        );
        assert_eq!(
            solve(&input(&[], 1, 1, None)),
            Err(SolverError::NotEnoughNodes { needed: 1, have: 0 })
        );
        let short: Vec<Vec<usize>> = vec![vec![0]; 10];
        assert!(matches!(
            solve(&input(&nodes, 1, 1, Some(&short))),
            Err(SolverError::InvalidPrevious(_))
        ));
        let out_of_range: Vec<Vec<usize>> = vec![vec![5]; NB_PARTITIONS];
        assert!(matches!(
            solve(&input(&nodes, 1, 1, Some(&out_of_range))),
            Err(SolverError::InvalidPrevious(_))
        ));
        // Messages tell the admin what to do.
        let msg = SolverError::NotEnoughZones { needed: 3, have: 2 }.to_string();
        assert!(msg.contains("grenier layout"), "{msg}");
    }

    #[test]
    fn tiny_capacities_still_work() {
        // 256 bytes per node: s = 1 byte.
        let nodes = [node("a", 256), node("b", 256)];
        let a = solve(&input(&nodes, 2, 2, None)).unwrap();
        assert_eq!(a.partition_size, 1);
        check_valid(&nodes, 2, 2, &a);
    }

    #[test]
    fn unchanged_cluster_moves_nothing_and_is_stable() {
        let nodes = [
            node("a", 4 * GB),
            node("a", 2 * GB),
            node("b", 3 * GB),
            node("c", 5 * GB),
            node("c", GB),
        ];
        let first = solve(&input(&nodes, 3, 3, None)).unwrap();
        let again = solve(&input(&nodes, 3, 3, Some(&first.partitions))).unwrap();
        assert_eq!(again.moved, 0);
        assert_eq!(again.partitions, first.partitions);
        assert_eq!(
            solve(&input(&nodes, 3, 3, None)).unwrap(),
            first,
            "deterministic"
        );
    }

    #[test]
    fn removed_node_only_moves_its_replicas() {
        let nodes: Vec<NodeSpec> = (0..6)
            .map(|i| node(["a", "b", "c"][i % 3], 10 * GB))
            .collect();
        let first = solve(&input(&nodes, 3, 3, None)).unwrap();
        // Node 5 (zone c) disappears: the caller renumbers nodes 0..5 and filters it out.
        let prev: Vec<Vec<usize>> = first
            .partitions
            .iter()
            .map(|p| p.iter().copied().filter(|&n| n != 5).collect())
            .collect();
        let lost = first.node_loads(6)[5];
        let a = solve(&input(&nodes[..5], 3, 3, Some(&prev))).unwrap();
        check_valid(&nodes[..5], 3, 3, &a);
        assert_eq!(a.moved, lost);
        // Kept nodes keep their position in the (filtered) previous lists.
        for (old, new) in prev.iter().zip(&a.partitions) {
            for (i, n) in old.iter().enumerate() {
                assert_eq!(new[i], *n);
            }
        }
    }

    #[test]
    fn adding_node_in_new_zone_moves_minimum() {
        // 6 nodes over 3 zones, rf 3: add a node in a 4th zone.
        let mut nodes: Vec<NodeSpec> = (0..6)
            .map(|i| node(["a", "b", "c"][i % 3], 10 * GB))
            .collect();
        let first = solve(&input(&nodes, 3, 3, None)).unwrap();
        let old_loads = first.node_loads(7);
        nodes.push(node("d", 10 * GB));
        let a = solve(&input(&nodes, 3, 3, Some(&first.partitions))).unwrap();
        let loads = check_valid(&nodes, 3, 3, &a);
        assert!(a.partition_size > first.partition_size);
        let lb: usize = loads
            .iter()
            .zip(&old_loads)
            .map(|(&n, &o)| n.saturating_sub(o))
            .sum();
        assert_eq!(a.moved, lb);
        assert_moves_optimal(&nodes, 3, 3, &first.partitions, &a);
    }

    #[test]
    fn closed_form_matches_max_flow_on_examples() {
        let nodes = [
            node("a", 3 * GB),
            node("a", GB),
            node("b", 2 * GB),
            node("c", 7 * GB),
        ];
        for (rf, zr) in [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 3)] {
            let a = solve(&input(&nodes, rf, zr, None)).unwrap();
            check_valid(&nodes, rf, zr, &a);
            let next = limits_at(&nodes, a.partition_size + 1);
            assert!(independent_max_flow(&nodes, rf, zr, &next) < NB_PARTITIONS * rf);
        }
    }

    // --- Property tests --------------------------------------------------------------------

    /// (zone index, capacity) per node, plus rf and zr.
    fn cluster() -> impl Strategy<Value = (Vec<NodeSpec>, usize, usize)> {
        let cap = prop_oneof![
            6 => (1u64..=10).prop_map(|u| u * 100 * GB),
            1 => (10u64..=100).prop_map(|u| u * 100 * GB),
            1 => (1u64..=99).prop_map(|u| u * GB),
        ];
        (1usize..=6)
            .prop_flat_map(move |nz| prop::collection::vec((0..nz, cap.clone()), 1..=30))
            .prop_map(|specs| {
                specs
                    .into_iter()
                    .map(|(z, c)| node(&format!("z{z}"), c))
                    .collect::<Vec<_>>()
            })
            .prop_flat_map(|nodes| {
                let max_rf = nodes.len().min(MAX_REPLICATION_FACTOR);
                let nz = {
                    let mut z: Vec<&str> = nodes.iter().map(|n| n.zone.as_str()).collect();
                    z.sort();
                    z.dedup();
                    z.len()
                };
                (Just(nodes), 1..=max_rf)
                    .prop_flat_map(move |(nodes, rf)| (Just(nodes), Just(rf), 1..=rf.min(nz)))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn prop_valid_and_optimal_size((nodes, rf, zr) in cluster()) {
            let a = solve(&input(&nodes, rf, zr, None)).unwrap();
            // 1 + 2: zones, distinctness, capacity share.
            let loads = check_valid(&nodes, rf, zr, &a);
            // Balance: within a zone, a node with room never holds fewer partitions, relative
            // to its capacity, than another node minus one (else one could be handed over).
            let limits = limits_at(&nodes, a.partition_size);
            for (i, x) in nodes.iter().enumerate() {
                for (j, y) in nodes.iter().enumerate() {
                    if x.zone == y.zone && loads[i] > loads[j] && loads[j] < limits[j] {
                        prop_assert!(
                            (loads[j] as u128 + 1) * x.capacity as u128
                                >= loads[i] as u128 * y.capacity as u128,
                            "node {} ({} B) holds {} but node {} ({} B) only {}",
                            i, x.capacity, loads[i], j, y.capacity, loads[j]
                        );
                    }
                }
            }
            prop_assert_eq!(a.moved, NB_PARTITIONS * rf);
            // 3: s is feasible (shown by the assignment itself) and s + 1 is not, by an
            // independent max-flow.
            let next = limits_at(&nodes, a.partition_size + 1);
            prop_assert!(independent_max_flow(&nodes, rf, zr, &next) < NB_PARTITIONS * rf);
            // Upper bounds: every usable byte is stored rf times, zr times in distinct zones.
            let s = a.partition_size as u128;
            let total: u128 = nodes.iter().map(|n| n.capacity as u128).sum();
            prop_assert!(s * 256 * rf as u128 <= total);
            let mut per_zone: BTreeMap<&str, u128> = BTreeMap::new();
            for n in &nodes {
                *per_zone.entry(n.zone.as_str()).or_default() += (n.capacity as u128).min(256 * s);
            }
            let zoned: u128 = per_zone.values().map(|&c| c.min(256 * s)).sum();
            prop_assert!(s * 256 * zr as u128 <= zoned);
        }

        #[test]
        fn prop_add_node_moves_minimum(
            (nodes, rf, zr) in cluster(),
            new_zone in 0usize..7,
            new_units in 1u64..=10,
        ) {
            let first = solve(&input(&nodes, rf, zr, None)).unwrap();
            // Unchanged cluster: nothing moves.
            let same = solve(&input(&nodes, rf, zr, Some(&first.partitions))).unwrap();
            prop_assert_eq!(same.moved, 0);
            prop_assert_eq!(&same.partitions, &first.partitions);

            let mut grown = nodes.clone();
            grown.push(node(&format!("z{new_zone}"), new_units * 100 * GB));
            let a = solve(&input(&grown, rf, zr, Some(&first.partitions))).unwrap();
            let loads = check_valid(&grown, rf, zr, &a);
            prop_assert!(a.partition_size >= first.partition_size);
            prop_assert_eq!(a.moved, count_moved(Some(&first.partitions), &a));
            let old_loads = first.node_loads(grown.len());
            let lb: usize = loads.iter().zip(&old_loads).map(|(&n, &o)| n.saturating_sub(o)).sum();
            prop_assert!(a.moved >= lb);
            if zr == 1 {
                prop_assert_eq!(a.moved, lb);
            }
            assert_moves_optimal(&grown, rf, zr, &first.partitions, &a);
        }
    }

    /// Timing and move counts; run with
    /// `cargo test --release --lib layout::solver -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing_report() {
        use std::time::Instant;
        let skewed = |n: usize, nz: usize| -> Vec<NodeSpec> {
            (0..n)
                .map(|i| {
                    node(
                        &format!("z{}", i % nz),
                        (1 + (i as u64 * 7) % 10) * 100 * GB,
                    )
                })
                .collect()
        };
        let equal: Vec<NodeSpec> = (0..30)
            .map(|i| node(&format!("z{}", i % 6), 100 * GB))
            .collect();
        for (name, nodes, rf, zr) in [
            (
                "30 nodes (100G..1T) / 6 zones / rf 3 zr 3",
                skewed(30, 6),
                3,
                3,
            ),
            ("30 equal nodes / 6 zones / rf 3 zr 3", equal, 3, 3),
            (
                "100 nodes (100G..1T) / 10 zones / rf 3 zr 3",
                skewed(100, 10),
                3,
                3,
            ),
            (
                "100 nodes (100G..1T) / 10 zones / rf 7 zr 5",
                skewed(100, 10),
                7,
                5,
            ),
        ] {
            let t0 = Instant::now();
            let first = solve(&input(&nodes, rf, zr, None)).unwrap();
            let t_first = t0.elapsed();
            check_valid(&nodes, rf, zr, &first);
            let mut grown = nodes.clone();
            grown.push(node("new-zone", 1000 * GB));
            let t0 = Instant::now();
            let a = solve(&input(&grown, rf, zr, Some(&first.partitions))).unwrap();
            let t_second = t0.elapsed();
            check_valid(&grown, rf, zr, &a);
            println!(
                "{name}: first layout {t_first:?}; adding a 1T node in a new zone {t_second:?}, \
                 moved {} replicas",
                a.moved
            );
        }

        let six: Vec<NodeSpec> = (0..6)
            .map(|i| node(["a", "b", "c"][i % 3], 100 * GB))
            .collect();
        let base = solve(&input(&six, 3, 3, None)).unwrap();
        for zone in ["a", "d"] {
            let mut seven = six.clone();
            seven.push(node(zone, 100 * GB));
            let a = solve(&input(&seven, 3, 3, Some(&base.partitions))).unwrap();
            check_valid(&seven, 3, 3, &a);
            println!(
                "6 nodes (100G) / 3 zones / rf 3 zr 3, + 7th node in zone {zone}: moved {}, \
                 loads {:?}, usable {} -> {} GB",
                a.moved,
                a.node_loads(7),
                base.usable_capacity / GB,
                a.usable_capacity / GB
            );
        }
    }
}
