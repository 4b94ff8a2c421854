//! A connected client socket of any stream family, and who is on the other end.
//!
//! The notes' `accept()` returns `(connection, address)`. Here a connection
//! is a [`Stream`] (TCP over IPv4 or IPv6, or a Unix stream socket) and the
//! address a [`Peer`]. Both families read and write the same way, so the
//! rest of the server holds one enum instead of being generic: a `match`
//! per system call costs nothing next to the call itself.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use mio::event::Source;
use mio::{Interest, Registry, Token};

/// A non-blocking, connected stream socket registered with the reactor.
#[derive(Debug)]
pub enum Stream {
    /// TCP, IPv4 or IPv6.
    Tcp(mio::net::TcpStream),
    /// A Unix-domain stream socket.
    Unix(mio::net::UnixStream),
    /// TLS over TCP: reads and writes carry plaintext, the session in
    /// between is fed by the socket's readiness (see [`TlsStream`](crate::net::tls::TlsStream)).
    #[cfg(feature = "tls")]
    Tls(Box<crate::net::tls::TlsStream>),
}

impl Stream {
    /// Shuts down the writing half: the peer reads EOF (the notes' `shutdown(SHUT_WR)`).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            // `close_notify` first, so the peer knows the end is no cut.
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.shutdown_write(),
        }
    }

    /// Copies up to `buf.len()` queued bytes without taking them from the
    /// socket (`recv(MSG_PEEK)`): a later read returns them again. Never
    /// waits; `WouldBlock` if nothing is queued; `Unsupported` for TLS.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            // The socket holds ciphertext: nothing to see without
            // decrypting, which takes it.
            #[cfg(feature = "tls")]
            Stream::Tls(_) => return Err(io::ErrorKind::Unsupported.into()),
        };
        loop {
            // SAFETY: `fd` is this open socket's, and `buf` is valid for
            // `buf.len()` bytes of writing for the length of the call.
            let n = unsafe {
                libc::recv(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Takes the socket's pending error (`SO_ERROR`): after a failed call
    /// such as `ENOTCONN`, the reason the connection died (`ECONNRESET`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.socket().take_error(),
        }
    }

    /// Whether a read shorter than asked proves that the kernel's receive
    /// queue is empty (TCP on Linux). Not for a Unix socket (a read stops
    /// at a message carrying descriptors), nor for TLS (a read returns at
    /// most what one record decrypted to, whatever waits behind it).
    pub fn short_read_means_empty(&self) -> bool {
        matches!(self, Stream::Tcp(_))
    }

    /// Whether this is a TLS session (its goodbye, `close_notify`, is data).
    pub fn is_tls(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(_) => true,
            _ => false,
        }
    }

    /// TLS: whether the handshake has still to complete. Plain sockets
    /// have none.
    pub fn is_handshaking(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.is_handshaking(),
            _ => false,
        }
    }

    /// TLS: whether ciphertext waits for the socket (the owner must ask for
    /// `WRITABLE` even with nothing of its own to send). Plain sockets keep
    /// nothing back.
    pub fn wants_write(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.wants_write(),
            _ => false,
        }
    }

    /// TLS: sends `close_notify` (once, best effort) before the socket is
    /// closed. Nothing to say for plain sockets.
    pub fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let Stream::Tls(s) = self {
            s.close_notify();
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            // Past glibc's cancellation point (see `net::direct`).
            #[cfg(target_os = "linux")]
            Stream::Tcp(s) => super::direct::recv(s.as_raw_fd(), buf),
            #[cfg(target_os = "linux")]
            Stream::Unix(s) => super::direct::recv(s.as_raw_fd(), buf),
            #[cfg(not(target_os = "linux"))]
            Stream::Tcp(s) => s.read(buf),
            #[cfg(not(target_os = "linux"))]
            Stream::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            #[cfg(target_os = "linux")]
            Stream::Tcp(s) => super::direct::send(s.as_raw_fd(), buf),
            #[cfg(target_os = "linux")]
            Stream::Unix(s) => super::direct::send(s.as_raw_fd(), buf),
            #[cfg(not(target_os = "linux"))]
            Stream::Tcp(s) => s.write(buf),
            #[cfg(not(target_os = "linux"))]
            Stream::Unix(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }

    /// Plain sockets keep nothing back; TLS writes the ciphertext that
    /// waits, as much as the socket takes now.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.deregister(registry),
        }
    }
}

/// Who sent a line: printed with it, and asked before obeying `stop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// An IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// A client of the Unix socket at `path`. Unix clients have no address
    /// of their own, so two of them are told apart by the process the
    /// kernel vouches for (`SO_PEERCRED`), where the system reports it.
    Unix {
        /// The listening socket's path.
        path: Arc<Path>,
        /// The connecting process, as it was when it called `connect`.
        cred: Option<UnixCred>,
    },
}

/// The process at the other end of a Unix socket, as the kernel reports it
/// (`SO_PEERCRED`): it cannot be forged by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixCred {
    /// Its process id.
    pub pid: u32,
    /// Its effective user id.
    pub uid: u32,
}

impl UnixCred {
    /// Asks the kernel who connected `stream` (Linux and Android).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn of(stream: &mio::net::UnixStream) -> io::Result<UnixCred> {
        use std::os::fd::AsRawFd;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are valid for writes and `len` holds
        // `cred`'s size, as getsockopt(2) requires; the fd is open for the
        // duration of the call, since `stream` is borrowed.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UnixCred {
            pid: u32::try_from(cred.pid).unwrap_or(0),
            uid: cred.uid,
        })
    }

    /// Elsewhere the peer's credentials are not asked for.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn of(_stream: &mio::net::UnixStream) -> io::Result<UnixCred> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl Peer {
    /// Whether the peer is on this machine: a loopback address (including an
    /// IPv4-mapped one) or a Unix socket. Only local peers may stop the server
    /// unless `--allow-remote-stop` says otherwise.
    pub fn is_local(&self) -> bool {
        match self {
            Peer::Ip(addr) => match addr.ip() {
                IpAddr::V4(ip) => ip.is_loopback(),
                IpAddr::V6(ip) => {
                    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            },
            Peer::Unix { .. } => true,
        }
    }
}

impl fmt::Display for Peer {
    /// `127.0.0.1:50312`, `[::1]:50312`, `unix:/path/to/sock#pid=4242,uid=1000`
    /// (or `unix:/path/to/sock` without credentials). The credentials follow
    /// the path's last `#`, and contain no space and no `]`, so a tagged
    /// line still splits at its first `] `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => write!(f, "{addr}"),
            Peer::Unix { path, cred: None } => write!(f, "unix:{}", path.display()),
            Peer::Unix {
                path,
                cred: Some(cred),
            } => write!(
                f,
                "unix:{}#pid={},uid={}",
                path.display(),
                cred.pid,
                cred.uid
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Peer {
        Peer::Ip(text.parse().unwrap())
    }

    #[test]
    fn loopback_and_unix_peers_are_local() {
        assert!(ip("127.0.0.1:1").is_local());
        assert!(ip("127.9.8.7:1").is_local());
        assert!(ip("[::1]:1").is_local());
        assert!(ip("[::ffff:127.0.0.1]:1").is_local());
        assert!(unix("/s", None).is_local());
    }

    #[test]
    fn other_peers_are_remote() {
        assert!(!ip("10.0.0.1:1").is_local());
        assert!(!ip("192.168.1.5:1").is_local());
        assert!(!ip("[fe80::1]:1").is_local());
        assert!(!ip("[::ffff:10.0.0.1]:1").is_local());
        assert!(!ip("0.0.0.0:1").is_local());
    }

    #[test]
    fn peers_print_as_addresses() {
        assert_eq!(ip("[::1]:5").to_string(), "[::1]:5");
        assert_eq!(unix("/s", None).to_string(), "unix:/s");
        let cred = UnixCred { pid: 42, uid: 1000 };
        assert_eq!(
            unix("/run/a#b.sock", Some(cred)).to_string(),
            "unix:/run/a#b.sock#pid=42,uid=1000"
        );
    }

    fn unix(path: &str, cred: Option<UnixCred>) -> Peer {
        Peer::Unix {
            path: Path::new(path).into(),
            cred,
        }
    }

    #[test]
    fn unix_peer_credentials_name_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = UnixCred::of(&mio::net::UnixStream::from_std(a)).unwrap();
        assert_eq!(cred.pid, std::process::id());
        // SAFETY: getuid has no preconditions.
        assert_eq!(cred.uid, unsafe { libc::getuid() });
    }
}
