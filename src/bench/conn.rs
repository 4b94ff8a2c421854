//! One client connection of the load generator: opening it without
//! blocking, and the echo bookkeeping that checks every byte coming back.
//!
//! Echo keeps one buffer per connection holding every byte sent but not yet
//! echoed; bytes that come back are compared with its front, so verifying is
//! a `memcmp` and costs no bookkeeping per message beyond its two
//! timestamps ([`Sent`]).

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;

use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::BenchError;
use super::config::Target;
use super::record::Sent;
use crate::net::stream::Stream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Churn: waiting for the schedule to start the next visit.
    Waiting,
    Connecting,
    Open,
    Closed,
}

/// One connection slot of a reactor.
pub(crate) struct Conn {
    /// Global connection number (for messages), not the token.
    pub(crate) id: usize,
    /// Index among its reactor's connections: its token and its place in the schedule.
    pub(crate) slot: usize,
    pub(crate) stream: Option<Stream>,
    pub(crate) state: State,
    /// When the current connect started.
    pub(crate) connect_started: std::time::Instant,
    /// Churn: when the current visit should have started (the schedule).
    pub(crate) visit_intended: std::time::Instant,
    /// Open loop: lines (churn: visits) this slot has started.
    pub(crate) started: u64,
    pub(crate) echo: Echo,
    /// Ingest: total bytes written; offset into the shared block is this
    /// modulo the block's length.
    pub(crate) ingested: u64,
}

impl Conn {
    pub(crate) fn new(id: usize, slot: usize, now: std::time::Instant) -> Conn {
        Conn {
            id,
            slot,
            stream: None,
            state: State::Waiting,
            connect_started: now,
            visit_intended: now,
            started: 0,
            echo: Echo::default(),
            ingested: 0,
        }
    }
}

impl Conn {
    /// Starts this slot's connect to `target` (bound to `source` first if
    /// given) and registers it under the slot's token: now `Connecting`.
    pub(crate) fn open(
        &mut self,
        target: &Target,
        source: Option<IpAddr>,
        registry: &Registry,
    ) -> io::Result<()> {
        let mut stream = connect(target, source)?;
        registry.register(
            &mut stream,
            Token(self.slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.stream = Some(stream);
        self.state = State::Connecting;
        Ok(())
    }
}

/// Starts a non-blocking connect to `target`, bound to `source` first if given.
fn connect(target: &Target, source: Option<IpAddr>) -> io::Result<Stream> {
    match target {
        Target::Tcp(server) => connect_tcp(*server, source).map(Stream::Tcp),
        Target::Unix(path) => connect_unix(path).map(Stream::Unix),
        // The handshake starts as the connect completes: the first write
        // or read sends the ClientHello, and reads drive the rest.
        #[cfg(feature = "tls")]
        Target::Tls(server, tls) => {
            let socket = connect_tcp(*server, source)?;
            let session = crate::net::tls::TlsStream::client(
                socket,
                std::sync::Arc::clone(&tls.config),
                tls.name.clone(),
            )?;
            Ok(Stream::Tls(Box::new(session)))
        }
    }
}

fn connect_tcp(server: SocketAddr, source: Option<IpAddr>) -> io::Result<mio::net::TcpStream> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    // Lines are small and latency is what we measure: no Nagle delay.
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        bind_address_no_port(&socket)?;
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    match socket.connect(&SockAddr::from(server)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

/// `IP_BIND_ADDRESS_NO_PORT`: `bind` takes the address now and leaves the
/// port to `connect`, which can then reuse a port that is busy towards
/// another destination. Without it `bind(ip, 0)` reserves a port for every
/// destination, and one source address runs out at about 28,000.
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the fd is open (owned by `socket`); the option value is a
    // c_int that lives across the call, and its size is passed with it.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A Unix-socket connect completes at once or fails at once (`EAGAIN`
/// when the listener's backlog is full): there is no "in progress".
fn connect_unix(path: &Path) -> io::Result<mio::net::UnixStream> {
    mio::net::UnixStream::connect(path)
}

/// After an event on a connecting socket: `Ok(true)` once connected,
/// `Ok(false)` if the event was spurious and the connect still runs
/// (mio's rule: `take_error`, then `peer_addr`).
pub(crate) fn finish_connect(stream: &Stream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    let peer = match stream {
        Stream::Tcp(s) => s.peer_addr().map(drop),
        Stream::Unix(s) => s.peer_addr().map(drop),
        #[cfg(feature = "tls")]
        Stream::Tls(s) => s.socket().peer_addr().map(drop),
    };
    match peer {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads until `WouldBlock`, handing each chunk to `each`; `Ok(false)` at
/// end of stream.
pub(crate) fn drain(
    stream: &mut Stream,
    scratch: &mut [u8],
    mut each: impl FnMut(&[u8]) -> Result<(), BenchError>,
    conn: usize,
) -> Result<bool, BenchError> {
    loop {
        match stream.read(scratch) {
            Ok(0) => return Ok(false),
            Ok(n) => each(&scratch[..n])?,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(BenchError::Io {
                    conn,
                    op: "read",
                    source,
                });
            }
        }
    }
}

/// Writes `bytes` until done or `WouldBlock`; returns how many went out.
pub(crate) fn write_some(
    stream: &mut Stream,
    bytes: &[u8],
    conn: usize,
) -> Result<usize, BenchError> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => {
                return Err(BenchError::Closed { conn, received: 0 });
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(BenchError::Io {
                    conn,
                    op: "write",
                    source,
                });
            }
        }
    }
    Ok(written)
}

/// Echo bookkeeping: `buf[..verified]` came back already, `buf[..written]`
/// went out; compacted as it drains.
#[derive(Debug, Default)]
pub(crate) struct Echo {
    buf: Vec<u8>,
    written: usize,
    verified: usize,
    /// Total bytes verified on this connection (stream offset).
    pub(crate) echoed: u64,
    /// When each message in flight should have gone and went, oldest first.
    pub(crate) in_flight: VecDeque<Sent>,
    /// Sequence number of the next message, written into its payload.
    next_seq: u64,
}

impl Echo {
    /// Forgets everything (churn: a new connection starts a new stream).
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.written = 0;
        self.verified = 0;
        self.echoed = 0;
        self.in_flight.clear();
    }

    /// Compares bytes that came back with the bytes sent at the same
    /// offset; returns how many whole messages of `size` bytes they complete.
    pub(crate) fn verify(
        &mut self,
        got: &[u8],
        size: usize,
        conn: usize,
    ) -> Result<u64, BenchError> {
        let outstanding = self.written - self.verified;
        let expected = &self.buf[self.verified..self.written];
        let common = got.len().min(outstanding);
        let first_difference = got[..common]
            .iter()
            .zip(&expected[..common])
            .position(|(got, sent)| got != sent);
        if let Some(at) = first_difference {
            return Err(BenchError::Mismatch {
                conn,
                offset: self.echoed + at as u64,
                expected: expected[at],
                got: got[at],
            });
        }
        if got.len() > outstanding {
            return Err(BenchError::Unexpected {
                conn,
                offset: self.echoed + outstanding as u64,
            });
        }
        let size = size as u64;
        let before = self.echoed / size;
        self.verified += got.len();
        self.echoed += got.len() as u64;
        Ok(self.echoed / size - before)
    }

    /// Queues message `next_seq` to go out, sent as `sent`.
    pub(crate) fn queue(&mut self, conn: usize, size: usize, sent: Sent) {
        self.compact();
        push_message(&mut self.buf, conn, self.next_seq, size);
        self.next_seq += 1;
        self.in_flight.push_back(sent);
    }

    /// Writes what is queued until done or `WouldBlock`.
    pub(crate) fn flush(&mut self, stream: &mut Stream, conn: usize) -> Result<(), BenchError> {
        // TLS: ciphertext the session holds goes first (nothing for plain
        // sockets), or it would wait for a write that may never come.
        if stream.wants_write() {
            stream.flush().map_err(|source| BenchError::Io {
                conn,
                op: "write",
                source,
            })?;
        }
        if self.written < self.buf.len() {
            self.written += write_some(stream, &self.buf[self.written..], conn)?;
        }
        Ok(())
    }

    /// Drops what came back; keeps the buffer from growing without bound.
    fn compact(&mut self) {
        if self.verified == self.buf.len() {
            self.buf.clear();
            self.written = 0;
            self.verified = 0;
        } else if self.verified >= 16 * 1024 {
            self.buf.drain(..self.verified);
            self.written -= self.verified;
            self.verified = 0;
        }
    }
}

/// Writes message `seq` of connection `conn` (`size` bytes, `\n` last) to `out`.
///
/// The sequence number comes first, least significant hex digit first, so
/// even a 2-byte line differs from its neighbour and a reordered, dropped or
/// duplicated line fails the byte comparison. The rest is a letter pattern
/// shifted by the connection number.
pub(crate) fn push_message(out: &mut Vec<u8>, conn: usize, seq: u64, size: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let body = size.saturating_sub(1);
    let mut digits = seq;
    out.extend((0..body).map(|i| {
        if i < 16 {
            let d = HEX[(digits & 0xf) as usize];
            digits >>= 4;
            d
        } else if i == 16 {
            b' '
        } else {
            b'a' + ((i + conn) % 26) as u8
        }
    }));
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn messages_have_the_size_and_one_newline() {
        for size in [1, 2, 17, 18, 64, 1024] {
            let mut out = Vec::new();
            push_message(&mut out, 3, 0x1234, size);
            assert_eq!(out.len(), size);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(out.last(), Some(&b'\n'));
        }
    }

    #[test]
    fn neighbouring_messages_differ_even_when_short() {
        for size in [2, 8, 64] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            push_message(&mut a, 0, 41, size);
            push_message(&mut b, 0, 42, size);
            assert_ne!(a, b);
        }
    }

    #[test]
    fn echo_counts_whole_messages_and_names_a_wrong_byte() {
        let mut echo = Echo::default();
        echo.queue(0, 8, Sent::now(Instant::now()));
        echo.queue(0, 8, Sent::now(Instant::now()));
        echo.written = echo.buf.len();
        let sent = echo.buf.clone();
        assert_eq!(echo.verify(&sent[..5], 8, 0).unwrap(), 0);
        assert_eq!(echo.verify(&sent[5..12], 8, 0).unwrap(), 1);
        let mut wrong = sent[12..].to_vec();
        wrong[1] ^= 0x20;
        let error = echo.verify(&wrong, 8, 0).unwrap_err();
        assert!(error.to_string().contains("echoed byte 13"), "{error}");
    }
}
