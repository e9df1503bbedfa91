//! Grenier: an S3-compatible, geo-distributed object store.
//!
//! The crate is layered, roughly `util` → `db`/`crdt`/`net` → `layout` → `table` → `block` → `model` →
//! `s3`/`admin` → `cli`, with [`server`] wiring them into a running node. The exact allowed
//! dependencies are a table in `doc/ARCHITECTURE.md`, enforced by the `layering` unit test.

pub mod admin;
pub mod block;
pub mod cli;
pub mod crdt;
pub mod db;
pub mod layout;
pub mod model;
pub mod net;
pub mod s3;
pub mod server;
pub mod table;
pub mod util;

#[cfg(test)]
mod layering;
#[cfg(test)]
pub(crate) mod test_support;
