//! The file descriptor limit, and the connection limit derived from it.
//!
//! Every connection costs one file descriptor. A server that accepts until
//! the process runs out gets `EMFILE` from `accept` (which the reactor
//! survives by pausing, see `reactor.rs`), but by then it also cannot open
//! a file or a log. So the binary raises its soft `RLIMIT_NOFILE` to the
//! hard limit at start-up, and the server refuses connections beyond that
//! limit minus a reserve, with a clear message, before the kernel has to.

use std::io;

/// File descriptors kept back for listeners, the `Poll`, the waker,
/// signals, stdio and whatever else the process opens.
pub const FD_RESERVE: u64 = 32;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = get()?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one initialised rlimit struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// The soft `RLIMIT_NOFILE` now in force.
pub fn fd_limit() -> io::Result<u64> {
    Ok(get()?.rlim_cur)
}

/// The default `--max-conns`: the soft fd limit minus [`FD_RESERVE`]
/// (at least 1; 1024 if the limit cannot be read).
pub fn default_max_conns() -> usize {
    let limit = fd_limit().unwrap_or(1024 + FD_RESERVE);
    let conns = limit.saturating_sub(FD_RESERVE).max(1);
    usize::try_from(conns).unwrap_or(usize::MAX)
}

fn get() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_leaves_the_reserve() {
        let limit = fd_limit().unwrap();
        assert_eq!(
            default_max_conns() as u64,
            limit.saturating_sub(FD_RESERVE).max(1)
        );
    }
}
