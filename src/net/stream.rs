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
}

impl Stream {
    /// Shuts down the writing half: the peer reads EOF (the notes' `shutdown(SHUT_WR)`).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }

    /// Takes the socket's pending error (`SO_ERROR`): after a failed call
    /// such as `ENOTCONN`, the reason the connection died (`ECONNRESET`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
        }
    }
}

/// Who sent a line: printed with it, and asked before obeying `stop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// An IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// A client of the Unix socket at this path (Unix clients have no name
    /// of their own; the kernel vouches that they are on this machine).
    Unix(Arc<Path>),
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
            Peer::Unix(_) => true,
        }
    }
}

impl fmt::Display for Peer {
    /// `127.0.0.1:50312`, `[::1]:50312` or `unix:/path/to/sock`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => write!(f, "{addr}"),
            Peer::Unix(path) => write!(f, "unix:{}", path.display()),
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
        assert!(Peer::Unix(Path::new("/s").into()).is_local());
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
        assert_eq!(Peer::Unix(Path::new("/s").into()).to_string(), "unix:/s");
    }
}
