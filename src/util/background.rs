//! Background workers, listed with their state and progress (`grenier worker list`), and variables
//! that tune them at runtime (`grenier worker set`).
//!
//! Layers register what they run: a [`Worker`] reports one or more [`WorkerStatus`] rows when asked; a
//! [`Tunable`] is a named integer with bounds that a worker reads on every step, so a change applies
//! at once. Persisting a tunable is the owner's business (the `on_set` hook).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// What a worker is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Working through its queue.
    Busy,
    /// Sleeping between steps to leave the disk and network to clients (tranquility).
    Throttled,
    /// Nothing to do until new work arrives or its next period.
    Idle,
    /// Stopped by an operator until resumed.
    Paused,
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Busy => "busy",
            WorkerState::Throttled => "throttled",
            WorkerState::Idle => "idle",
            WorkerState::Paused => "paused",
        }
    }
}

/// One row of `grenier worker list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    /// Human progress, e.g. "42.0% (1,234 blocks checked, 0 corrupted)".
    pub progress: Option<String>,
    /// Items waiting, when the worker has a queue.
    pub queue_length: Option<u64>,
    /// Items done since the node started.
    pub done: u64,
    /// Errors since the node started.
    pub errors: u64,
    pub last_error: Option<String>,
}

pub trait Worker: Send + Sync + 'static {
    fn status(&self) -> Vec<WorkerStatus>;
}

/// A runtime-tunable integer with bounds.
pub struct Tunable {
    value: AtomicU64,
    pub min: u64,
    pub max: u64,
    pub description: &'static str,
    on_set: Box<dyn Fn(u64) + Send + Sync>,
}

impl Tunable {
    pub fn new(
        value: u64,
        min: u64,
        max: u64,
        description: &'static str,
        on_set: impl Fn(u64) + Send + Sync + 'static,
    ) -> Arc<Tunable> {
        Arc::new(Tunable {
            value: AtomicU64::new(value.clamp(min, max)),
            min,
            max,
            description,
            on_set: Box::new(on_set),
        })
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    pub fn set(&self, v: u64) -> Result<(), String> {
        if v < self.min || v > self.max {
            return Err(format!("{v} is out of range {}..={}", self.min, self.max));
        }
        self.value.store(v, Ordering::Relaxed);
        (self.on_set)(v);
        Ok(())
    }
}

/// A tunable as listed by `grenier worker get`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunableInfo {
    pub name: String,
    pub value: u64,
    pub min: u64,
    pub max: u64,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TunableError {
    #[error("no variable {0:?}; `grenier worker get` lists them")]
    Unknown(String),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

/// Every worker and tunable of a node.
#[derive(Default)]
pub struct Registry {
    workers: RwLock<Vec<Arc<dyn Worker>>>,
    tunables: RwLock<BTreeMap<String, Arc<Tunable>>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    pub fn add_worker(&self, w: Arc<dyn Worker>) {
        self.workers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(w);
    }

    pub fn add_tunable(&self, name: &str, t: Arc<Tunable>) {
        self.tunables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), t);
    }

    pub fn list(&self) -> Vec<WorkerStatus> {
        let workers = self.workers.read().unwrap_or_else(|e| e.into_inner());
        workers.iter().flat_map(|w| w.status()).collect()
    }

    pub fn tunables(&self) -> Vec<TunableInfo> {
        let t = self.tunables.read().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .map(|(name, t)| TunableInfo {
                name: name.clone(),
                value: t.get(),
                min: t.min,
                max: t.max,
                description: t.description.to_string(),
            })
            .collect()
    }

    pub fn set(&self, name: &str, value: u64) -> Result<(), TunableError> {
        let t = self.tunables.read().unwrap_or_else(|e| e.into_inner());
        let tunable = t
            .get(name)
            .ok_or_else(|| TunableError::Unknown(name.to_string()))?;
        tunable
            .set(value)
            .map_err(|e| TunableError::Invalid(name.to_string(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Fixed;
    impl Worker for Fixed {
        fn status(&self) -> Vec<WorkerStatus> {
            vec![WorkerStatus {
                name: "fixed".into(),
                state: WorkerState::Idle,
                progress: None,
                queue_length: Some(3),
                done: 1,
                errors: 0,
                last_error: None,
            }]
        }
    }

    #[test]
    fn tunables_are_bounded_and_report_changes() {
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let r = Registry::new();
        let t = Tunable::new(2, 0, 10, "test", move |v| s.store(v, Ordering::Relaxed));
        r.add_tunable("t", t.clone());
        r.add_worker(Arc::new(Fixed));
        assert!(r.set("t", 11).is_err());
        assert!(matches!(r.set("nope", 1), Err(TunableError::Unknown(_))));
        r.set("t", 7).unwrap();
        assert_eq!(t.get(), 7);
        assert_eq!(seen.load(Ordering::Relaxed), 7);
        assert_eq!(r.tunables()[0].value, 7);
        assert_eq!(r.list()[0].queue_length, Some(3));
    }
}
