//! Descriptors: at startup the soft `RLIMIT_NOFILE` is raised to the hard limit, and the number of
//! client connections the result can hold is computed (one descriptor per client, plus
//! [`RESERVED`] for the listener, the AMI socket, log files, database connections and stdio).
//!
//! Shell (one system call), run on the main thread before any other thread starts.

/// Descriptors kept for everything that is not a client connection.
pub const RESERVED: u64 = 64;

/// Raises the soft limit to the hard one; returns the soft limit in force afterwards (None where
/// the platform has no such limit, e.g. Windows).
#[cfg(unix)]
pub fn raise() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

#[cfg(not(unix))]
pub fn raise() -> Option<u64> {
    None
}

/// Client connections (pending and logged in) that `limit` descriptors hold, with the reserve and
/// `extra` (database pool connections) kept aside.
pub fn client_capacity(limit: u64, extra: u64) -> usize {
    limit.saturating_sub(RESERVED + extra) as usize
}

#[cfg(test)]
mod tests {
    #[test]
    fn capacity_keeps_the_reserve() {
        assert_eq!(super::client_capacity(1024, 4), 1024 - 64 - 4);
        assert_eq!(super::client_capacity(10, 4), 0);
    }
}
