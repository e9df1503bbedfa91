//! Integration tests: one binary (fast linking), one module per feature, shared harness.

mod block;
mod cluster;
mod harness;
mod s3;
mod table;
mod xml_limits;
