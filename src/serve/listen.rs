//! Listening sockets: the notes' `socket()`, `setsockopt(SO_REUSEADDR)`,
//! `bind()` and `listen(5)`, for every family (and UDP's bound socket), done before the
//! reactor starts so that a bad address or a port in use fails at once with
//! a message naming it.
//!
//! Sockets are made with `socket2`, which exposes each step the notes name
//! (and `IPV6_V6ONLY`, so `0.0.0.0:P` and `[::]:P` can both be bound), then
//! handed to mio. A Unix socket path is treated with care, because it is a
//! file: a stale socket left by a crashed server is replaced, a live one is
//! refused, and anything that is not a socket is never deleted.

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::net::addr::Address;
use crate::net::stream::{Peer, Stream, UnixCred};
use crate::serve::error::{Error, ListenError};

/// A socket handed over from outside (socket activation), as it turned out
/// to be once looked at: served like the ones bound here.
#[derive(Debug)]
pub(crate) enum Adopted {
    /// A TCP or Unix stream listener.
    Stream(Listener),
    /// A UDP socket.
    Datagram(mio::net::UdpSocket),
}

/// What a listener is bound to, with the real port once the kernel chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    /// A TCP listener.
    Tcp(SocketAddr),
    /// A Unix stream listener.
    Unix(PathBuf),
    /// A UDP socket.
    Udp(SocketAddr),
    /// A TCP listener whose clients speak TLS.
    Tls(SocketAddr),
}

impl fmt::Display for BoundAddr {
    /// The form printed in `listening on ...`: `tcp://127.0.0.1:43617`, `unix:/path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundAddr::Tcp(addr) => write!(f, "tcp://{addr}"),
            BoundAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            BoundAddr::Udp(addr) => write!(f, "udp://{addr}"),
            BoundAddr::Tls(addr) => write!(f, "tls://{addr}"),
        }
    }
}

/// How listening sockets are made.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// The `listen()` backlog: connections the kernel queues before `accept`.
    pub backlog: i32,
    /// Permission bits of a Unix socket file.
    pub unix_mode: u32,
    /// Set `SO_REUSEPORT` on TCP and UDP sockets, so that each event loop
    /// binds its own (several loops).
    pub reuse_port: bool,
}

/// A bound, listening stream socket of one family.
#[derive(Debug)]
pub(crate) enum Listener {
    /// TCP over IPv4 or IPv6.
    Tcp(mio::net::TcpListener),
    /// A Unix stream socket, which removes its file when dropped.
    Unix(UnixListener),
    /// TCP whose clients speak TLS: accepted as TCP, wrapped by the acceptor.
    Tls(mio::net::TcpListener),
}

/// Every socket the server was asked to bind, in the order the addresses
/// were given: stream listeners, which `accept`, apart from UDP sockets,
/// which have nothing to accept and receive datagrams themselves.
#[derive(Debug, Default)]
pub(crate) struct Bound {
    pub listeners: Vec<Listener>,
    pub datagrams: Vec<mio::net::UdpSocket>,
    /// Where each is bound, in the order given (for `listening on ...`).
    pub addrs: Vec<BoundAddr>,
    /// By listener, and by UDP socket: the address it was bound to with
    /// `SO_REUSEPORT`, so that another loop can bind its own socket there;
    /// `None` for a socket only one loop can have (Unix, inherited).
    pub listener_ports: Vec<Option<SocketAddr>>,
    pub datagram_ports: Vec<Option<SocketAddr>>,
}

impl Bound {
    /// Binds every socket that `address` names (a host name may resolve to
    /// several addresses, and each gets its own socket).
    pub fn bind(&mut self, address: &Address, options: ListenOptions) -> Result<(), Error> {
        match address {
            Address::Tcp { .. } | Address::Tls { .. } => {
                let tls = matches!(address, Address::Tls { .. });
                for addr in resolve(address)? {
                    let listener = bind_tcp(addr, options)?;
                    let local = listener.local_addr().unwrap_or(addr);
                    self.add_listener(if tls {
                        Listener::Tls(listener)
                    } else {
                        Listener::Tcp(listener)
                    });
                    self.listener_ports.pop();
                    self.listener_ports
                        .push(options.reuse_port.then_some(local));
                }
            }
            Address::Unix(path) => {
                self.add_listener(Listener::Unix(UnixListener::bind(path, options)?));
            }
            Address::Udp { .. } => {
                for addr in resolve(address)? {
                    let socket = bind_udp(addr, options)?;
                    let local = socket.local_addr().unwrap_or(addr);
                    self.addrs.push(BoundAddr::Udp(local));
                    self.datagrams.push(socket);
                    self.datagram_ports
                        .push(options.reuse_port.then_some(local));
                }
            }
        }
        Ok(())
    }

    /// For another event loop: its own TCP and UDP sockets on the same
    /// addresses and ports (`SO_REUSEPORT`: the kernel spreads connections
    /// and datagrams among them). Sockets that cannot be bound twice are left
    /// to this loop, which hands their clients round.
    pub fn replicate(&self, options: ListenOptions) -> Result<Bound, Error> {
        let mut copy = Bound::default();
        for (listener, addr) in self.listeners.iter().zip(&self.listener_ports) {
            let Some(addr) = addr else { continue };
            let socket = bind_tcp(*addr, options)?;
            copy.add_listener(match listener {
                Listener::Tls(_) => Listener::Tls(socket),
                _ => Listener::Tcp(socket),
            });
            copy.listener_ports.pop();
            copy.listener_ports.push(Some(*addr));
        }
        for addr in self.datagram_ports.iter().flatten() {
            copy.datagrams.push(bind_udp(*addr, options)?);
            copy.datagram_ports.push(Some(*addr));
        }
        Ok(copy)
    }

    /// By listener: whether only this loop has it (see `listener_ports`).
    pub fn unshared_listeners(&self) -> Vec<bool> {
        self.listener_ports.iter().map(Option::is_none).collect()
    }

    /// Takes a socket handed over by socket activation, as it is.
    pub fn adopt(&mut self, socket: Adopted, tls: bool) {
        match socket {
            Adopted::Stream(listener) if tls => self.add_listener(listener.into_tls()),
            Adopted::Stream(listener) => self.add_listener(listener),
            Adopted::Datagram(socket) => {
                let local = socket
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                self.addrs.push(BoundAddr::Udp(local));
                self.datagrams.push(socket);
                self.datagram_ports.push(None);
            }
        }
    }

    /// A `tls://` address that names an inherited TCP socket: that socket
    /// is served as TLS instead of binding another; `false` if none matches.
    pub fn serve_inherited_as_tls(&mut self, address: &Address) -> bool {
        let Ok(wanted) = address.resolve() else {
            return false;
        };
        let mut found = false;
        for index in 0..self.listeners.len() {
            let matches = matches!(&self.listeners[index], Listener::Tcp(listener)
                if listener.local_addr().is_ok_and(|local| wanted.contains(&local)));
            if matches {
                let listener = self.listeners.remove(index);
                self.listeners.insert(index, listener.into_tls());
                self.addrs[index] = self.listeners[index].bound_addr();
                found = true;
            }
        }
        found
    }

    /// Whether any listener's clients speak TLS.
    pub fn has_tls(&self) -> bool {
        self.listeners.iter().any(Listener::is_tls)
    }

    fn add_listener(&mut self, listener: Listener) {
        self.addrs.push(listener.bound_addr());
        self.listeners.push(listener);
        self.listener_ports.push(None);
    }
}

impl Listener {
    /// Where this listener is bound.
    pub fn bound_addr(&self) -> BoundAddr {
        match self {
            Listener::Tcp(listener) => BoundAddr::Tcp(
                listener
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            ),
            Listener::Unix(listener) => BoundAddr::Unix(listener.path.to_path_buf()),
            Listener::Tls(listener) => BoundAddr::Tls(
                listener
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            ),
        }
    }

    /// Whether its clients speak TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Listener::Tls(_))
    }

    /// The same socket, its clients speaking TLS (an inherited socket named
    /// `tls`, or bound where a `tls://` address says).
    pub fn into_tls(self) -> Listener {
        match self {
            Listener::Tcp(listener) => Listener::Tls(listener),
            other => other,
        }
    }

    /// Accepts one pending connection (the notes' `accept()`), already
    /// non-blocking, with `TCP_NODELAY` set so a short reply is not held back
    /// by Nagle's algorithm waiting for an ACK, and urgent data kept inline.
    pub fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(listener) | Listener::Tls(listener) => {
                let (stream, addr) = listener.accept()?;
                if let Err(err) = stream.set_nodelay(true) {
                    log::debug!("cannot set TCP_NODELAY for {addr}: {err}");
                }
                // TCP urgent data stays in the byte stream (RFC 6093 advises
                // it), so nothing a client sends is set aside unread.
                if let Err(err) = socket2::SockRef::from(&stream).set_out_of_band_inline(true) {
                    log::debug!("cannot set SO_OOBINLINE for {addr}: {err}");
                }
                Ok((Stream::Tcp(stream), Peer::Ip(addr)))
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.socket.accept()?;
                // Linux gives Unix stream sockets urgent data too (`MSG_OOB`,
                // one byte set aside): kept inline as for TCP, so both
                // families print the same bytes.
                if let Err(err) = socket2::SockRef::from(&stream).set_out_of_band_inline(true) {
                    log::debug!("cannot set SO_OOBINLINE for a Unix client: {err}");
                }
                let cred = UnixCred::of(&stream)
                    .inspect_err(|err| log::debug!("no SO_PEERCRED for a Unix client: {err}"))
                    .ok();
                let peer = Peer::Unix {
                    path: listener.path.clone(),
                    cred,
                };
                Ok((Stream::Unix(stream), peer))
            }
        }
    }

    /// The mio source to register with the reactor.
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Listener::Tcp(listener) | Listener::Tls(listener) => listener,
            Listener::Unix(listener) => &mut listener.socket,
        }
    }
}

/// Every socket address a TCP or UDP address names, or an error naming it.
fn resolve(address: &Address) -> Result<Vec<SocketAddr>, Error> {
    address.resolve().map_err(|source| Error::Resolve {
        address: address.to_string(),
        source,
    })
}

fn bind_tcp(addr: SocketAddr, options: ListenOptions) -> Result<mio::net::TcpListener, Error> {
    let fail = |err: io::Error| Error::Listen {
        address: addr.to_string(),
        reason: err.into(),
    };
    // The notes' SO_REUSEADDR: a restarted server can bind while old
    // connections linger in TIME_WAIT. (It never lets two servers share a
    // port; SO_REUSEPORT, set for several loops, does.)
    let socket = bound_socket(addr, Type::STREAM, true, options).map_err(fail)?;
    socket.listen(options.backlog).map_err(fail)?;
    if !addr.ip().is_loopback() {
        log::warn!("listening on {addr}: the server is reachable from the network");
    }
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

fn bind_udp(addr: SocketAddr, options: ListenOptions) -> Result<mio::net::UdpSocket, Error> {
    // No SO_REUSEADDR here: for UDP it would let a second server share the
    // port and silently take some of the datagrams. (With several loops,
    // SO_REUSEPORT does share it, among sockets of the same user, on purpose.)
    let socket = bound_socket(addr, Type::DGRAM, false, options).map_err(|err| Error::Listen {
        address: format!("udp://{addr}"),
        reason: err.into(),
    })?;
    if !addr.ip().is_loopback() {
        log::warn!("listening on udp://{addr}: the server is reachable from the network");
    }
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// The notes' `socket()`, `setsockopt()` and `bind()` for TCP and UDP:
/// non-blocking, IPv6 sockets for IPv6 only (so `0.0.0.0:P` and `[::]:P`
/// can both be bound), and `SO_REUSEPORT` when each loop binds its own.
fn bound_socket(
    addr: SocketAddr,
    kind: Type,
    reuse_address: bool,
    options: ListenOptions,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, None)?;
    if reuse_address {
        socket.set_reuse_address(true)?;
    }
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A listening Unix socket that owns its file: the file is removed when the
/// listener is dropped, if it is still the one we made. A socket handed over
/// by socket activation owns no file: its maker removes it.
#[derive(Debug)]
pub(crate) struct UnixListener {
    socket: mio::net::UnixListener,
    path: Arc<Path>,
    /// Device and inode of the socket file we created, so that dropping never
    /// removes a file another process put there since; `None` for a socket
    /// we did not create.
    identity: Option<(u64, u64)>,
}

impl UnixListener {
    fn bind(path: &Path, options: ListenOptions) -> Result<Self, Error> {
        let fail = |reason: ListenError| Error::Listen {
            address: format!("unix:{}", path.display()),
            reason,
        };
        remove_if_stale(path).map_err(fail)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| fail(e.into()))?;
        let address = SockAddr::unix(path).map_err(|e| fail(e.into()))?;
        socket.bind(&address).map_err(|e| fail(e.into()))?;
        // The file exists from bind() on, but nobody can connect before
        // listen(): set its mode in between, so there is no window in which
        // a wider mode is in force.
        let metadata = fs::metadata(path).map_err(|e| fail(e.into()))?;
        let set_mode = fs::set_permissions(path, fs::Permissions::from_mode(options.unix_mode));
        let listening = set_mode
            .and_then(|()| socket.set_nonblocking(true))
            .and_then(|()| socket.listen(options.backlog));
        if let Err(err) = listening {
            let _ = fs::remove_file(path);
            return Err(fail(err.into()));
        }
        let std_listener: std::os::unix::net::UnixListener = socket.into();
        Ok(UnixListener {
            socket: mio::net::UnixListener::from_std(std_listener),
            path: path.into(),
            identity: Some((metadata.dev(), metadata.ino())),
        })
    }

    /// A listening socket someone else bound (socket activation): served,
    /// never unlinked.
    pub(crate) fn inherited(socket: mio::net::UnixListener, path: PathBuf) -> Self {
        UnixListener {
            socket,
            path: path.into(),
            identity: None,
        }
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        let ours = self.identity.is_some_and(|identity| {
            fs::symlink_metadata(&self.path)
                .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == identity)
        });
        if ours && let Err(err) = fs::remove_file(&self.path) {
            log::warn!("cannot remove {}: {err}", self.path.display());
        }
    }
}

/// Makes way for a new socket at `path`: nothing there is fine; a socket
/// nobody listens on is stale and removed; anything else is refused.
fn remove_if_stale(path: &Path) -> Result<(), ListenError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    if !metadata.file_type().is_socket() {
        return Err(ListenError::NotASocket);
    }
    match probe(path) {
        Ok(()) => Err(ListenError::InUse),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("removing stale socket {}", path.display());
            fs::remove_file(path).map_err(ListenError::from)
        }
        // The owner is alive but its backlog is full (Linux says "try
        // again"; elsewhere the connect may be left in progress): in use.
        Err(err)
            if err.kind() == io::ErrorKind::WouldBlock
                || err.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            Err(ListenError::Unresponsive)
        }
        Err(err) => Err(err.into()),
    }
}

/// Connects to the socket at `path` without ever waiting: a blocking
/// `connect` to a live socket whose owner does not accept would wait for
/// room in its backlog forever. The probe is a real connection, so a
/// running selectd prints it as a client that opens and closes at once.
fn probe(path: &Path) -> io::Result<()> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.connect(&SockAddr::unix(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ListenOptions {
        ListenOptions {
            backlog: 16,
            unix_mode: 0o600,
            reuse_port: false,
        }
    }

    #[test]
    fn ipv6_listeners_are_v6_only() {
        let address: Address = "[::1]:0".parse().unwrap();
        let mut bound = Bound::default();
        bound.bind(&address, options()).unwrap();
        let Listener::Tcp(listener) = &bound.listeners[0] else {
            panic!("not TCP");
        };
        assert!(socket2::SockRef::from(listener).only_v6().unwrap());
    }

    #[test]
    fn unix_socket_file_has_the_mode_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let address = Address::Unix(path.clone());
        let mut bound = Bound::default();
        bound.bind(&address, options()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(bound);
        assert!(!path.exists());
    }

    #[test]
    fn bound_addresses_print_with_their_scheme() {
        let udp: Address = "udp://127.0.0.1:0".parse().unwrap();
        let mut bound = Bound::default();
        bound.bind(&udp, options()).unwrap();
        assert!(bound.listeners.is_empty(), "UDP has nothing to accept");
        assert!(bound.addrs[0].to_string().starts_with("udp://127.0.0.1:"));
    }
}
