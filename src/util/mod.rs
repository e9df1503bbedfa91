//! Small shared helpers: configuration, human sizes, time and its wire formats, percent-encoding and
//! query strings, versioned encoding.
//! **Invariant:** `util` depends on no other Grenier module.

pub mod background;
pub mod config;
pub mod encode;
pub mod fs;
pub mod hash;
pub mod http;
pub mod rlimit;
pub mod size;
pub mod time;
pub mod timefmt;
pub mod url;
