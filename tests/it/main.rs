//! Integration tests: one binary (fast linking), one module per feature, shared harness.

mod cluster;
mod harness;
mod table;
