//! Integration tests: one binary (fast linking), one module per feature, shared harness.

mod block;
mod cluster;
mod harness;
mod memory;
mod s3;
mod table;
