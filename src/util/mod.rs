//! Small shared helpers: configuration, human sizes, time and its wire formats, percent-encoding and
//! query strings, RFC 2047 header values, versioned encoding.
//! **Invariant:** `util` depends on no other Grenier module.

pub mod background;
pub mod config;
pub mod encode;
pub mod fs;
pub mod hash;
pub mod http;
pub mod rfc2047;
pub mod rlimit;
pub mod size;
pub mod time;
pub mod timefmt;
pub mod url;
