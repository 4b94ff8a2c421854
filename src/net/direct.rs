//! Reads and writes on a client socket straight through `syscall(2)`, past
//! glibc's cancellation points.
//!
//! POSIX lets one thread cancel another at a *cancellation point*, and
//! `recv`, `send`, `read` and `write` are such points. glibc implements
//! that in each wrapper: once the process has a second thread (selectd's
//! output writer is one), every call switches asynchronous cancellation on
//! before the system call and off after it. callgrind counts it: a `recv`
//! costs 10 instructions in user space in a process with one thread, and 59
//! with two; so does every `send`. selectd never cancels a thread, and the
//! loop's sockets never block, so there is nothing for that to protect: the
//! loop's reads and writes (two per echoed message) go to the kernel
//! directly, with the same arguments std gives `recv` and `send`
//! (`MSG_NOSIGNAL`: a peer that is gone is `EPIPE`, never `SIGPIPE`).
//!
//! Linux only; elsewhere the standard library's calls are used. `poll`'s
//! own `epoll_wait` still goes through glibc (it is mio's).

use std::io;
use std::os::fd::RawFd;
use std::ptr;

/// `recv(fd, buf, 0)`: the bytes read, `Ok(0)` at the end of the stream.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recvfrom(2) writes at most `buf.len()` bytes into `buf`, which
    // is valid for that many; no source address is asked for (both
    // pointers null), so nothing else is written.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            0,
            ptr::null_mut::<libc::sockaddr>(),
            ptr::null_mut::<libc::socklen_t>(),
        )
    };
    result(n)
}

/// `send(fd, buf, MSG_NOSIGNAL)`: the bytes the socket took.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: sendto(2) reads at most `buf.len()` bytes from `buf`, which is
    // valid for that many; no destination address is given (a connected
    // socket), so nothing else is read.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            ptr::null::<libc::sockaddr>(),
            0,
        )
    };
    result(n)
}

/// A system call's return: a count, or `-1` with the reason in `errno`.
fn result(n: libc::c_long) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn bytes_go_through_and_errors_keep_their_reason() {
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(send(a.as_raw_fd(), b"hello\n").unwrap(), 6);
        let mut buf = [0u8; 16];
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"hello\n");
        b.set_nonblocking(true).unwrap();
        let err = recv(b.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 0, "end of stream");
        let err = send(b.as_raw_fd(), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "EPIPE, no SIGPIPE");
    }
}
