//! Persistent queue of cascading updates (in progress).
