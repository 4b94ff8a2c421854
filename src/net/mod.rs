//! What all three programs share about the network: addresses as a user
//! writes them, durations and sizes on the command line, a connected stream
//! of any family, and the file descriptor limit.
//!
//! `serve`, `send` and `bench` each run their own mio loop, but they name
//! endpoints the same way (`127.0.0.1:10001`, `[::1]:7`, `unix:/run/s.sock`,
//! `udp://...`) and report the operating system's errors the same way, so
//! that lives here, once.

use std::io;

pub mod addr;
#[cfg(target_os = "linux")]
pub(crate) mod direct;
pub(crate) mod drain;
pub mod limits;
pub(crate) mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod units;

/// The operating system's reason without Rust's ` (os error 98)` suffix:
/// `Address already in use`.
pub(crate) fn os_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_reason_drops_the_error_number() {
        let err = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(os_reason(&err), "Address already in use");
        let custom = io::Error::other("plain words");
        assert_eq!(os_reason(&custom), "plain words");
    }
}
