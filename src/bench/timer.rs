//! A wake-up with microsecond precision for the open-loop schedule.
//!
//! `Poll::poll` takes its time-out in whole milliseconds (epoll's unit), so
//! a reactor that slept until the next line is due would send it up to a
//! millisecond late, and since latency counts from when the line was due,
//! that slack would show up in every corrected percentile as if the server
//! had caused it. A `timerfd` registered with the same `Poll` fires at the
//! nanosecond it is set to, and the reactor still wakes at once for replies.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A one-shot monotonic timer, readable when it fires.
pub(crate) struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// Creates the timer and registers it with `registry` under `token`.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        // SAFETY: timerfd_create takes no pointers; a negative result is an error.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just created and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timer { fd })
    }

    /// Fires once, `after` from now (at least 1 ns: zero would disarm it).
    pub(crate) fn set(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: libc::c_long::from(after.subsec_nanos() as i32),
            },
        };
        // SAFETY: the fd is open; `spec` lives across the call; the old
        // value is not asked for (null).
        let done =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if done == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Consumes the expiry count so the next firing is a new edge.
    pub(crate) fn clear(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8 that we own.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}
