//! The file descriptor limit, and the connection limit derived from it.
//!
//! Every connection costs one file descriptor. A server that accepts until
//! the process runs out gets `EMFILE` from `accept` (which the event loop
//! survives by pausing), but by then it also cannot open a file or a log.
//! So the binary raises its soft `RLIMIT_NOFILE` to the hard limit at
//! start-up, and the server refuses connections beyond that limit minus a
//! reserve, with a clear message, before the kernel has to. `bench` wants a
//! number of its own (one descriptor per simulated client) and asks for it.
//!
//! The system calls go through the `rlimit` crate, so no `unsafe` is needed
//! here.

use std::io;

use rlimit::Resource;

/// File descriptors kept back for listeners, the `Poll`, the waker,
/// signals, stdio and whatever else the process opens.
pub const FD_RESERVE: u64 = 32;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (soft, hard) = Resource::NOFILE.get()?;
    if soft < hard {
        Resource::NOFILE.set(hard, hard)?;
    }
    Ok(soft.max(hard))
}

/// Raises the soft `RLIMIT_NOFILE` to at least `wanted`: first within the
/// hard limit, then, if that is not enough, the hard limit itself (which only
/// a privileged process may do). Returns the soft limit now in force, which
/// may still be below `wanted`; the caller decides whether that is enough.
pub fn raise_fd_limit_to(wanted: u64) -> io::Result<u64> {
    let (soft, hard) = Resource::NOFILE.get()?;
    if wanted > hard && Resource::NOFILE.set(wanted, wanted).is_ok() {
        return Ok(wanted);
    }
    raise_fd_limit().or(Ok(soft))
}

/// The soft `RLIMIT_NOFILE` now in force.
pub fn fd_limit() -> io::Result<u64> {
    Resource::NOFILE.get_soft()
}

/// The default `--max-conns`: the soft fd limit minus [`FD_RESERVE`]
/// (at least 1; 1024 if the limit cannot be read).
pub fn default_max_conns() -> usize {
    let limit = fd_limit().unwrap_or(1024 + FD_RESERVE);
    let conns = limit.saturating_sub(FD_RESERVE).max(1);
    usize::try_from(conns).unwrap_or(usize::MAX)
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

    #[test]
    fn raising_reaches_the_hard_limit_and_never_lowers() {
        let before = fd_limit().unwrap();
        let hard = Resource::NOFILE.get_hard().unwrap();
        assert_eq!(raise_fd_limit().unwrap(), hard);
        assert!(raise_fd_limit_to(before).unwrap() >= before);
        assert_eq!(fd_limit().unwrap(), hard);
    }
}
