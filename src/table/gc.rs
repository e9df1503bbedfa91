//! Tombstone garbage collection (in progress).
