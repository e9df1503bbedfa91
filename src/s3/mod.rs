//! The S3 HTTP API (our own code on hyper 1 and quick-xml).
//!
//! **Invariant:** `s3` never talks RPC or touches tables directly; it goes through `model`.

pub mod checksum;
pub mod error;
pub mod sigv4;
pub mod streaming;
pub mod xml;
