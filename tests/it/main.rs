//! Integration tests: one binary (fast linking), one module per feature, shared harness.

mod at_rest;
mod block;
mod cluster;
mod front_door;
mod harness;
mod history;
mod hostile;
mod memory;
mod netns;
mod resilience;
mod resilience_net;
mod s3;
mod s3_acl;
mod s3_checksums;
mod s3_compat;
mod s3_cors;
mod s3_lifecycle;
mod s3_post_object;
mod s3_retries;
mod s3_sse;
mod s3_tags;
mod s3_website;
mod table;
mod xml_limits;
