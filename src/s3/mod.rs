//! The S3 HTTP API (our own code on hyper 1 and quick-xml): routing (`router`), SigV4 (`sigv4`,
//! `streaming` for aws-chunked bodies), checksums (`checksum`, `mpu_checksum` for multipart
//! uploads), SSE-C headers (`sse`), request bodies and their digests (`body`), XML documents
//! (`xml`), the handlers' shared context and response helpers (`ctx`), the server and request
//! lifecycle (`server`), who may do what (`access`: keys and anonymous requests), and the operations
//! (`bucket`, `list`, `object`, `multipart`, `copy`, `tagging`, `acl`, `attributes`, `post_object`
//! with its form reader `form`, `cors`, `lifecycle`, `website`), and the static website endpoint
//! (`web`). Request paths and their round trips: `doc/s3.md`.
//!
//! **Invariant:** `s3` never talks RPC or touches tables directly; it goes through `model`.

pub mod access;
pub mod acl;
pub mod attributes;
pub mod body;
pub mod bucket;
pub mod checksum;
pub mod copy;
pub mod cors;
pub mod ctx;
pub mod error;
pub mod form;
pub mod lifecycle;
pub mod list;
pub mod mpu_checksum;
pub mod multipart;
pub mod object;
pub mod post_object;
pub mod router;
pub mod server;
pub mod sigv4;
pub mod sse;
pub mod streaming;
pub mod tagging;
pub mod web;
pub mod website;
pub mod xml;
