//! The process's open-file limit (`RLIMIT_NOFILE`).
//!
//! Every HTTP connection, RPC socket and open block file costs a file descriptor; the common soft limit
//! of 1024 is far too low for a server exposed to the internet. At startup the node raises its soft
//! limit to the hard limit (which needs no privilege), and derives the default connection caps of its
//! HTTP listeners from the result (see [`crate::util::http::default_max_connections`]).

/// The soft open-file limit before and after [`raise_nofile_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    pub before: u64,
    pub after: u64,
    /// The hard limit (the most the soft limit can be raised to without privilege).
    pub hard: u64,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit. An infinite hard limit (possible on some systems)
/// is capped at 1 Mi descriptors, which the kernel accepts on Linux. On error (the limit can't be read
/// or set), the error is returned and the limit is unchanged.
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    let hard = lim.rlim_max;
    let target = if hard == libc::RLIM_INFINITY {
        1 << 20
    } else {
        hard
    };
    if before != libc::RLIM_INFINITY && before < target {
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(NofileLimit {
        before: as_u64(before),
        after: as_u64(lim.rlim_cur),
        hard: as_u64(hard),
    })
}

/// The current soft `RLIMIT_NOFILE`, if it can be read.
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then(|| as_u64(lim.rlim_cur))
}

#[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
fn as_u64(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        u64::try_from(v).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let l = raise_nofile_limit().unwrap();
        assert!(l.after >= l.before, "{l:?}");
        assert!(l.hard == u64::MAX || l.after == l.hard, "{l:?}");
        assert_eq!(nofile_limit(), Some(l.after));
        let again = raise_nofile_limit().unwrap();
        assert_eq!(again.before, l.after);
        assert_eq!(again.after, l.after);
    }
}
