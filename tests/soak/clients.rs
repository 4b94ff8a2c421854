//! The soak's clients: one connection each, with a behaviour picked at
//! random, over TCP or a Unix socket.
//!
//! Bytes are written in random pieces so lines cross the server's reads;
//! Unix clients attach a file descriptor (`SCM_RIGHTS`) to some pieces,
//! which ends a Unix-socket read early, so a short read there does not
//! mean the queue is empty.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{PATIENCE, reset};
use crate::ledger::{Ledger, Pace, Script};

/// The server's idle time-out, and how long an idle client stays silent.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(500);

/// A tiny xorshift64* generator: reproducible from its seed, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero (xorshift would stay at zero), and well mixed.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0), near enough for a test.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// What a connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Complete lines, maybe an unterminated last line, then a half-close:
    /// the whole echo comes back, then EOF.
    HalfClose,
    /// Line by line, each echo read back slowly; then leave by FIN or by
    /// `disconnect`.
    SlowEcho,
    /// Lines, some echoes read (those lines arrived), then half a line and
    /// a reset.
    ResetMidLine,
    /// As `ResetMidLine`, the half line being `stop`: printed perhaps, but
    /// never obeyed (the client never finished it).
    ResetMidCommand,
    /// Lines and an immediate reset: none is known to have arrived.
    ResetAfterLines,
    /// One line, its echo, maybe half a line, then silence until the
    /// server's idle time-out closes the connection.
    Idle,
    /// Only an unterminated line, then a half-close: printed and echoed.
    Unterminated,
    /// Connect and leave at once, politely or not.
    CloseAtOnce,
    ResetAtOnce,
    /// Over a Unix socket, some pieces carrying a file descriptor; then a
    /// half-close and the whole echo.
    UnixHalfClose,
    /// Over a Unix socket: a line carrying a descriptor and more lines right
    /// behind it, then the client waits for every echo before leaving.
    UnixFdThenLines,
    /// Sends without reading until the server holds it back, and well past
    /// the idle time-out; then reads everything back, or resets.
    Backpressured,
}

impl Kind {
    /// Each kind and its weight in a mix (they sum to 100).
    pub const WEIGHTS: [(Kind, usize); 12] = [
        (Kind::HalfClose, 22),
        (Kind::SlowEcho, 15),
        (Kind::ResetMidLine, 10),
        (Kind::ResetMidCommand, 3),
        (Kind::ResetAfterLines, 9),
        (Kind::Idle, 3),
        (Kind::Unterminated, 9),
        (Kind::CloseAtOnce, 5),
        (Kind::ResetAtOnce, 5),
        (Kind::UnixHalfClose, 10),
        (Kind::UnixFdThenLines, 8),
        (Kind::Backpressured, 1),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::HalfClose => "half-close",
            Kind::SlowEcho => "slow-echo",
            Kind::ResetMidLine => "reset mid-line",
            Kind::ResetMidCommand => "reset mid-command",
            Kind::ResetAfterLines => "reset after lines",
            Kind::Idle => "idle",
            Kind::Unterminated => "unterminated",
            Kind::CloseAtOnce => "close at once",
            Kind::ResetAtOnce => "reset at once",
            Kind::UnixHalfClose => "unix half-close",
            Kind::UnixFdThenLines => "unix fd then lines",
            Kind::Backpressured => "backpressured",
        }
    }
}

/// Where the clients connect.
#[derive(Clone)]
pub struct Target {
    pub tcp: String,
    pub unix: std::path::PathBuf,
}

/// One client connection, over TCP or a Unix socket.
enum Client {
    Tcp(TcpStream),
    /// With the descriptor to attach to some pieces.
    Unix(UnixStream, RawFd),
}

impl Client {
    fn tcp(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|err| {
            panic!("cannot connect to {addr}: {err}: has the server stopped?")
        });
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client::Tcp(stream)
    }

    /// A TCP client with the smallest socket buffers the kernel allows, so
    /// that backpressure sets in after a few MB rather than tens.
    fn tcp_small_buffers(addr: &str) -> Client {
        let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_send_buffer_size(4096).expect("SO_SNDBUF");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket.connect(&addr.into()).unwrap_or_else(|err| {
            panic!("cannot connect to {addr}: {err}: has the server stopped?")
        });
        let stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
        Client::Tcp(stream)
    }

    fn unix(path: &Path, fd: RawFd) -> Client {
        let stream = UnixStream::connect(path).unwrap_or_else(|err| {
            panic!(
                "cannot connect to {}: {err}: has the server stopped?",
                path.display()
            )
        });
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
        Client::Unix(stream, fd)
    }

    /// How the server prints this peer: `127.0.0.1:PORT`, or the Unix
    /// listener's `unix:PATH` (all Unix peers look alike).
    fn label(&self, unix: &Path) -> String {
        match self {
            Client::Tcp(stream) => stream.local_addr().expect("local addr").to_string(),
            Client::Unix(..) => format!("unix:{}", unix.display()),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Client::Tcp(stream) => stream.shutdown(Shutdown::Write),
            Client::Unix(stream, _) => stream.shutdown(Shutdown::Write),
        }
    }

    /// Sends one piece; a Unix client attaches its descriptor to some.
    fn send_piece(&mut self, piece: &[u8], rng: &mut Rng) -> io::Result<()> {
        match self {
            Client::Tcp(stream) => stream.write_all(piece),
            Client::Unix(stream, fd) if rng.chance(30) => {
                let sent = send_with_fd(stream, piece, *fd)?;
                stream.write_all(&piece[sent..])
            }
            Client::Unix(stream, _) => stream.write_all(piece),
        }
    }

    /// Closes with RST (TCP, `SO_LINGER` 0); a Unix socket just closes.
    fn reset(self) {
        match self {
            Client::Tcp(stream) => reset(stream),
            Client::Unix(stream, _) => drop(stream),
        }
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Client::Tcp(stream) => stream.read(buf),
            Client::Unix(stream, _) => stream.read(buf),
        }
    }
}

/// `sendmsg` with `bytes` and one descriptor attached (`SCM_RIGHTS`);
/// returns how many bytes went (the rest, if any, is the caller's).
fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: RawFd) -> io::Result<usize> {
    // Room for one control message with one int, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE is arithmetic on a constant.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    assert!(space <= std::mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg points at `control`, which has room for one header and
    // one int (checked above); CMSG_FIRSTHDR is then non-null, and the
    // data is written unaligned. sendmsg reads `bytes` and `control`,
    // both alive for the call.
    let sent = unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd);
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// `least + 0..more` complete lines `PREFIX T C N`, each ending in `\n` or
/// `\r\n`.
fn complete(rng: &mut Rng, name: &str, least: usize, more: usize) -> Script {
    let count = least + rng.below(more);
    let lines = (0..count)
        .map(|n| {
            let text = format!("{name} {n}");
            let end: &[u8] = if rng.chance(30) { b"\r\n" } else { b"\n" };
            let wire = [text.as_bytes(), end].concat();
            (text, wire)
        })
        .collect();
    Script { lines }
}

/// Writes `bytes` in random pieces, now and then pausing for a moment.
fn write_pieces(
    client: &mut Client,
    bytes: &[u8],
    rng: &mut Rng,
    pace: &mut Pace,
) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let take = if rng.chance(40) {
            rest.len()
        } else {
            (1 + rng.below(12)).min(rest.len())
        };
        pace.send();
        client.send_piece(&rest[..take], rng)?;
        rest = &rest[take..];
        if rng.chance(10) {
            thread::sleep(Duration::from_micros(200 + rng.below(800) as u64));
        }
    }
    Ok(())
}

/// Reads up to `want` bytes in small pieces with short sleeps between;
/// returns what arrived before EOF or an error.
fn read_slowly(client: &mut impl Read, want: usize, rng: &mut Rng) -> Vec<u8> {
    let mut got = Vec::with_capacity(want);
    let mut buf = [0u8; 16];
    while got.len() < want {
        let size = (1 + rng.below(buf.len())).min(want - got.len());
        match client.read(&mut buf[..size]) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if rng.chance(30) {
            thread::sleep(Duration::from_micros(100 + rng.below(1500) as u64));
        }
    }
    got
}

/// Reads to EOF (or an error); returns what arrived.
fn read_all(client: &mut impl Read) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    got
}

/// A descriptor for Unix clients to pass: `/dev/null`, opened once.
pub fn passable_fd() -> File {
    File::open("/dev/null").expect("open /dev/null")
}

/// One connection of `kind`; `thread` and `conn` make its lines unique.
pub fn one_connection(
    target: &Target,
    fd: RawFd,
    kind: Kind,
    (thread, conn): (usize, usize),
    rng: &mut Rng,
    ledger: &mut Ledger,
) {
    let name = format!("soak {thread} {conn}");
    let unix = matches!(kind, Kind::UnixHalfClose | Kind::UnixFdThenLines);
    let mut client = match kind {
        _ if unix => Client::unix(&target.unix, fd),
        Kind::Backpressured => Client::tcp_small_buffers(&target.tcp),
        _ => Client::tcp(&target.tcp),
    };
    let mut pace = Pace::start();
    let peer = client.label(&target.unix);
    ledger.connections += 1;
    *ledger.by_kind.entry(kind.name()).or_default() += 1;
    match kind {
        Kind::HalfClose | Kind::UnixHalfClose => {
            let mut script = complete(rng, &name, 0, 7);
            if rng.chance(50) {
                let text = format!("tail {thread} {conn}");
                let wire = if rng.chance(20) {
                    format!("{text}\r") // a lone `\r` at EOF is not text
                } else {
                    text.clone()
                };
                script.lines.push((text, wire.into_bytes()));
            }
            let sent = script.bytes();
            let ok = write_pieces(&mut client, &sent, rng, &mut pace).is_ok() && {
                pace.send();
                client.shutdown_write().is_ok()
            };
            let echoed = if rng.chance(30) {
                read_slowly(&mut client, sent.len() + 1, rng)
            } else {
                read_all(&mut client)
            };
            ledger.check_echo(&peer, &script, &echoed, &pace);
            if !ok {
                ledger.cut_short(&peer, &pace, "while sending");
            }
        }
        Kind::SlowEcho => {
            let script = complete(rng, &name, 1, 6);
            let mut echoed = Vec::new();
            for (_, wire) in &script.lines {
                if write_pieces(&mut client, wire, rng, &mut pace).is_err() {
                    break;
                }
                let got = read_slowly(&mut client, wire.len(), rng);
                let complete = got.len() == wire.len();
                echoed.extend_from_slice(&got);
                if !complete {
                    break;
                }
            }
            ledger.check_echo(&peer, &script, &echoed, &pace);
            if rng.chance(50) && client.send_piece(b"disconnect\n", rng).is_ok() {
                let rest = read_all(&mut client);
                assert!(rest.is_empty(), "{peer}: bytes after disconnect: {rest:?}");
            }
        }
        Kind::ResetMidLine | Kind::ResetMidCommand => {
            let script = complete(rng, &name, 0, 5);
            let sent = script.bytes();
            let mut echoed = Vec::new();
            if write_pieces(&mut client, &sent, rng, &mut pace).is_ok() {
                let confirm: usize = script.lines[..rng.below(script.lines.len() + 1)]
                    .iter()
                    .map(|(_, w)| w.len())
                    .sum();
                echoed = read_slowly(&mut client, confirm, rng);
                let partial = if kind == Kind::ResetMidCommand {
                    "stop".to_string()
                } else {
                    format!("partial {thread} {conn}")
                };
                // Whatever part of it was written may arrive.
                let _ = write_pieces(&mut client, partial.as_bytes(), rng, &mut pace);
                ledger.fragments.push(partial);
                if rng.chance(50) {
                    thread::sleep(Duration::from_micros(rng.below(2000) as u64));
                }
            }
            ledger.settle(&script, &echoed);
            client.reset();
        }
        Kind::ResetAfterLines => {
            let script = complete(rng, &name, 1, 4);
            let _ = write_pieces(&mut client, &script.bytes(), rng, &mut pace);
            ledger.settle(&script, &[]);
            client.reset();
        }
        Kind::Idle => {
            let script = complete(rng, &name, 1, 1);
            let sent = script.bytes();
            let _ = write_pieces(&mut client, &sent, rng, &mut pace);
            let echoed = read_slowly(&mut client, sent.len(), rng);
            ledger.check_echo(&peer, &script, &echoed, &pace);
            // Half a line before the silence: printed at the idle close,
            // not obeyed (it might be lost only if the client stalled).
            let partial = rng.chance(50).then(|| format!("idle {thread} {conn}"));
            if let Some(partial) = &partial {
                pace.send();
                let _ = client.send_piece(partial.as_bytes(), rng);
            }
            let silent = Instant::now();
            let rest = read_all(&mut client);
            assert!(
                rest.is_empty(),
                "{peer}: unexpected bytes while idle: {rest:?}"
            );
            assert!(
                silent.elapsed() < PATIENCE,
                "{peer}: idle client not closed"
            );
            if let Some(partial) = partial {
                if pace.stalled() {
                    ledger.fragments.push(partial);
                } else {
                    ledger.must.push(partial);
                }
            }
        }
        Kind::Unterminated => {
            let text = format!("tail {thread} {conn}");
            let script = Script {
                lines: vec![(text.clone(), text.into_bytes())],
            };
            let ok = write_pieces(&mut client, &script.bytes(), rng, &mut pace).is_ok() && {
                pace.send();
                client.shutdown_write().is_ok()
            };
            let echoed = read_all(&mut client);
            ledger.check_echo(&peer, &script, &echoed, &pace);
            if !ok {
                ledger.cut_short(&peer, &pace, "while sending");
            }
        }
        Kind::CloseAtOnce => drop(client),
        Kind::ResetAtOnce => client.reset(),
        Kind::UnixFdThenLines => {
            let Client::Unix(stream, fd) = &client else {
                unreachable!("a Unix kind")
            };
            let script = complete(rng, &name, 2, 4);
            let sent = script.bytes();
            let first = script.lines[0].1.len();
            pace.send();
            // The first line with a descriptor, the rest right behind it
            // before the server can read: all wait in one receive queue.
            let ok = send_with_fd(stream, &sent[..first], *fd)
                .and_then(|n| (&*stream).write_all(&sent[n..]))
                .is_ok();
            let echoed = read_slowly(&mut client, sent.len(), rng);
            ledger.check_echo(&peer, &script, &echoed, &pace);
            if !ok {
                ledger.cut_short(&peer, &pace, "while sending");
            }
        }
        Kind::Backpressured => held_back(client, &name, &peer, rng, &mut pace, ledger),
    }
}

/// Sends lines without reading until the server holds it back (a write
/// would block: the server stopped reading it, its echo unread); then
/// either reads the whole echo back (every byte, in order) or resets.
///
/// It stops sending at the first sign of being held back, however long a
/// busy machine takes to get there: a client that then read none of its
/// echo for the idle time-out would be closed by the server's write
/// time-out (its output makes no progress), which `tests/held_back.rs`
/// covers; here the client reads everything back.
fn held_back(
    client: Client,
    name: &str,
    peer: &str,
    rng: &mut Rng,
    pace: &mut Pace,
    ledger: &mut Ledger,
) {
    let Client::Tcp(mut stream) = client else {
        unreachable!("a TCP kind")
    };
    stream.set_nonblocking(true).expect("nonblocking");
    let mut script = Script { lines: Vec::new() };
    // How much of the last line of `script` went.
    let mut written = 0;
    let mut blocked = 0;
    let started = Instant::now();
    while blocked == 0 {
        assert!(
            started.elapsed() < PATIENCE,
            "{peer}: the server never held the client back"
        );
        if script
            .lines
            .last()
            .is_none_or(|(_, wire)| written == wire.len())
        {
            let text = format!("{name} {} {}", script.lines.len(), "x".repeat(1000));
            let wire = format!("{text}\n").into_bytes();
            script.lines.push((text, wire));
            written = 0;
        }
        let (_, line) = script.lines.last().expect("a line in progress");
        pace.send();
        match stream.write(&line[written..]) {
            Ok(n) => written += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => blocked += 1,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    assert!(blocked > 0, "{peer}: the server never held the client back");
    let rest = script
        .lines
        .last()
        .map_or(Vec::new(), |(_, wire)| wire[written..].to_vec());
    if rng.chance(50) {
        // A reset with the last line perhaps half sent: it may be printed
        // as far as it arrived.
        if !rest.is_empty() {
            let (text, _) = script.lines.pop().expect("a line in progress");
            ledger.fragments.push(text);
        }
        ledger.settle(&script, &[]);
        reset(stream);
        return;
    }
    // Read everything back while finishing the last line and half-closing.
    stream.set_nonblocking(false).expect("blocking");
    let mut reader = stream.try_clone().expect("clone");
    let echo = thread::spawn(move || read_all(&mut reader));
    pace.send();
    let ok = stream.write_all(&rest).is_ok() && {
        pace.send();
        stream.shutdown(Shutdown::Write).is_ok()
    };
    let echoed = echo.join().expect("echo reader");
    ledger.check_echo(peer, &script, &echoed, pace);
    if !ok {
        ledger.cut_short(peer, pace, "while sending");
    }
}
