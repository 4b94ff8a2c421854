//! `selectd send`: the notes' sample client, done right.
//!
//! The seed client is `settimeout(20)`, `connect`, `sendall`, `shutdown(1)`,
//! then `recv` until EOF. That order is only safe for a request small enough
//! to fit in the socket buffers: the client does not read while it sends, so
//! an echo server that answers every byte fills our receive buffer, stops
//! reading, fills its own, and both ends wait for ever. This client sends and
//! receives in the same loop, so any amount of input goes through.
//!
//! # Why a thread for standard input
//!
//! The socket lives in a small mio loop. Standard input does not: it may be a
//! regular file, which epoll refuses to watch, or a terminal or pipe shared
//! with the shell, where setting `O_NONBLOCK` would change the file for every
//! other process holding it. So one helper thread does plain blocking reads
//! and hands chunks over a *bounded* channel, waking the loop with a
//! [`mio::Waker`]. The bound keeps memory flat whatever the input size: when
//! the server stops reading, our writes stop, the channel fills, and the
//! thread blocks. Standard output is written with blocking writes from the
//! loop: a slow reader of our output slows us, and through us the server,
//! which is the back-pressure we want.
//!
//! # Time-outs
//!
//! `--timeout` is the notes' `settimeout`, applied twice. Resolution and
//! connect share one budget (resolution runs on a thread, because
//! `getaddrinfo` cannot be cancelled, and we simply stop waiting for it).
//! Afterwards the same duration bounds every wait for progress: if no byte
//! moves across the socket in either direction for that long, we give up.
//!
//! # Taking turns
//!
//! Each turn of the loop reads at most 1 MiB, then writes at most 1 MiB, then
//! polls (without sleeping if a side stopped on its budget). Draining one
//! side to `WouldBlock` first would let a server that never pauses starve
//! our sending, so that it never hears the `stop` we are trying to send.
//!
//! # Streams only
//!
//! A `udp://` address is refused as a usage error: the client's contract
//! (half-close when the input ends, print until EOF) has no meaning for
//! datagrams, which have neither.
//!
//! # Exit codes
//!
//! Each of the notes' four exceptions gets its own code, see
//! [`SendError::exit_code`]: `gaierror`/`herror` is 3, a refused connect 4,
//! `timeout` 5, and any other socket `error` (reset by peer included) 6.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{SockAddr, Socket, Type};

use crate::net::addr::{Address, AddressError};
use crate::net::os_reason;
use crate::net::stream::Stream;
use crate::net::units::{format_duration, parse_duration};

/// The command line of `selectd send`, as clap parses it; see [`SendConfig`]
/// for the checked form the rest of the client uses.
///
/// Values stay strings until [`SendConfig::try_from`], as in `cli.rs`, so a
/// bad one is reported in one line naming the flag, not a usage dump.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// Where to connect: `HOST:PORT`, `[V6]:PORT` or `unix:PATH`.
    // Help text spelled out: in the doc comment, rustdoc reads `[V6]` as a link.
    #[arg(
        value_name = "ADDR",
        help = "Where to connect: HOST:PORT, [V6]:PORT or unix:PATH"
    )]
    pub addr: String,

    /// Send TEXT instead of standard input (\n, \r, \t, \\, \0 and \xHH understood)
    #[arg(long, value_name = "TEXT", conflicts_with = "http")]
    pub data: Option<String>,

    /// Send an HTTP/1.0 GET request for PATH instead of standard input
    #[arg(long, value_name = "PATH")]
    pub http: Option<String>,

    /// Bound on resolution plus connect, then on any wait for the socket to make progress
    #[arg(long, value_name = "DUR", default_value = "20s")]
    pub timeout: String,

    /// Keep the write side open after the input ends (no shutdown(SHUT_WR))
    #[arg(long)]
    pub no_shutdown: bool,
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Standard input, streamed as it arrives.
    Stdin,
    /// Bytes known up front: `--data` after unescaping, or the `--http` request.
    Bytes(Vec<u8>),
}

/// A checked `send` command: a stream address, the bytes to send, and a
/// non-zero time-out.
///
/// ```
/// use std::time::Duration;
/// use selectd::send::{Payload, SendArgs, SendConfig};
///
/// let args = SendArgs {
///     addr: "[::1]:8000".into(),
///     data: None,
///     http: Some("/".into()),
///     timeout: "500ms".into(),
///     no_shutdown: false,
/// };
/// let config = SendConfig::try_from(args)?;
/// assert_eq!(config.timeout, Duration::from_millis(500));
/// assert_eq!(
///     config.payload,
///     Payload::Bytes(b"GET / HTTP/1.0\r\nHost: [::1]\r\n\r\n".to_vec())
/// );
/// # Ok::<(), selectd::send::SendError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// A TCP or Unix address; never UDP.
    pub addr: Address,
    /// Where the outgoing bytes come from.
    pub payload: Payload,
    /// See [`SendArgs::timeout`]; greater than zero, at most [`LONGEST_TIMEOUT`].
    pub timeout: Duration,
    /// Shut down the write side after the payload (the seed's `shutdown(1)`).
    pub shutdown: bool,
}

impl TryFrom<SendArgs> for SendConfig {
    type Error = SendError;

    fn try_from(args: SendArgs) -> Result<Self, SendError> {
        let addr: Address = args
            .addr
            .parse()
            .map_err(|err: AddressError| SendError::Usage(err.to_string()))?;
        if let Address::Udp { .. } = addr {
            return Err(SendError::Usage(format!(
                "send speaks stream sockets only; {addr} is a datagram address (use HOST:PORT or unix:PATH)"
            )));
        }
        let timeout = parse_duration(&args.timeout)
            .map_err(|err| SendError::Usage(format!("--timeout: {err}")))?;
        if timeout.is_zero() {
            return Err(SendError::Usage(
                "--timeout: must be greater than zero".into(),
            ));
        }
        let payload = match (args.data, args.http) {
            (Some(text), _) => Payload::Bytes(unescape(&text)),
            (None, Some(path)) => Payload::Bytes(http_request(&addr, &path)?),
            (None, None) => Payload::Stdin,
        };
        Ok(SendConfig {
            addr,
            payload,
            timeout: timeout.min(LONGEST_TIMEOUT),
            shutdown: !args.no_shutdown,
        })
    }
}

/// The longest timeout taken literally: the command line refuses more
/// ([`units::MAX_DURATION`](crate::net::units::MAX_DURATION)), and a longer one
/// set through the library is cut to this, because deadlines
/// (`now + timeout`) must not overflow [`Instant`], which would panic.
pub const LONGEST_TIMEOUT: Duration = crate::net::units::MAX_DURATION;

/// Turns `\n`, `\r`, `\t`, `\\`, `\0` and `\xHH` into the bytes they name.
///
/// Any other backslash is kept as written, as `printf` does, so a Windows
/// path or a regular expression survives unchanged.
///
/// ```
/// use selectd::send::unescape;
/// assert_eq!(unescape(r"stop\r\n"), b"stop\r\n");
/// assert_eq!(unescape(r"a\qb\x41"), b"a\\qbA");
/// ```
pub fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match bytes[i + 1] {
            b'n' => (b'\n', 2),
            b'r' => (b'\r', 2),
            b't' => (b'\t', 2),
            b'0' => (0, 2),
            b'\\' => (b'\\', 2),
            b'x' => match text
                .get(i + 2..i + 4)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => (byte, 4),
                None => (b'\\', 1),
            },
            _ => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// Builds `GET PATH HTTP/1.0\r\nHost: HOST\r\n\r\n`, the request the seed
/// meant to send (it wrote `HTML/1.0` and bare `\n`).
///
/// An IPv6 host is bracketed, as RFC 3986 requires; a Unix socket has no host,
/// so it sends `localhost`. A path with spaces or control characters would
/// change the request line itself, so it is refused.
///
/// ```
/// use selectd::send::http_request;
/// let addr = "localhost:8000".parse()?;
/// assert_eq!(
///     http_request(&addr, "/index.html")?,
///     b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n"
/// );
/// assert!(http_request(&addr, "/a b").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn http_request(addr: &Address, path: &str) -> Result<Vec<u8>, SendError> {
    if path.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SendError::Usage(format!(
            "--http path '{}' must be non-empty, without spaces or control characters",
            path.escape_debug()
        )));
    }
    let host = match addr.host() {
        Some(host) if host.contains(':') => format!("[{host}]"),
        Some(host) => host.to_string(),
        None => "localhost".to_string(),
    };
    Ok(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").into_bytes())
}

/// Why `send` failed. Each variant is one of the notes' exceptions (or a
/// usage or local failure) and has its own exit code.
#[derive(Debug)]
pub enum SendError {
    /// The command line is valid to clap but not to us (exit code 2).
    Usage(String),
    /// `gaierror`/`herror`: the host name does not resolve (exit code 3).
    Resolve {
        /// The address as the user wrote it.
        addr: String,
        /// The resolver's reason.
        source: io::Error,
    },
    /// Nobody listens there: `ECONNREFUSED` (exit code 4).
    Refused {
        /// The address as the user wrote it.
        addr: String,
    },
    /// `timeout`: resolution plus connect, or one wait for progress, took
    /// longer than `--timeout` (exit code 5).
    TimedOut {
        /// The address as the user wrote it.
        addr: String,
        /// The `--timeout` that ran out.
        after: Duration,
    },
    /// `error`: any other socket failure, such as a reset by the peer
    /// (exit code 6).
    Socket {
        /// The address as the user wrote it.
        addr: String,
        /// What we were doing: `connect to`, `send to`, `receive from`.
        doing: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Reading standard input, writing standard output or polling failed;
    /// not the peer's fault (exit code 1).
    Local {
        /// What failed: `read standard input`, `write standard output`, `poll`.
        what: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
}

impl SendError {
    /// The process exit code for this error; stable, documented in
    /// `docs/client.md`. Success is 0.
    ///
    /// | code | meaning |
    /// |------|---------|
    /// | 1 | local failure: standard input, standard output, poll |
    /// | 2 | usage |
    /// | 3 | cannot resolve (`gaierror`) |
    /// | 4 | connection refused |
    /// | 5 | timed out (`timeout`) |
    /// | 6 | reset by peer or another socket error (`error`) |
    pub fn exit_code(&self) -> i32 {
        match self {
            SendError::Local { .. } => 1,
            SendError::Usage(_) => 2,
            SendError::Resolve { .. } => 3,
            SendError::Refused { .. } => 4,
            SendError::TimedOut { .. } => 5,
            SendError::Socket { .. } => 6,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Usage(message) => f.write_str(message),
            SendError::Resolve { addr, source } => {
                write!(f, "cannot resolve {addr}: {}", os_reason(source))
            }
            SendError::Refused { addr } => write!(f, "connection to {addr} refused"),
            SendError::TimedOut { addr, after } => write!(
                f,
                "timed out after {} waiting for {addr}",
                format_duration(*after)
            ),
            SendError::Socket { addr, source, .. }
                if source.kind() == io::ErrorKind::ConnectionReset =>
            {
                write!(f, "connection to {addr} reset by peer")
            }
            SendError::Socket {
                addr,
                doing,
                source,
            } => write!(f, "cannot {doing} {addr}: {}", os_reason(source)),
            SendError::Local { what, source } => write!(f, "cannot {what}: {}", os_reason(source)),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Resolve { source, .. }
            | SendError::Socket { source, .. }
            | SendError::Local { source, .. } => Some(source),
            SendError::Usage(_) | SendError::Refused { .. } | SendError::TimedOut { .. } => None,
        }
    }
}

/// Runs `selectd send`: checks the arguments, connects, and streams standard
/// input (or the fixed payload) out and everything received to standard output.
pub fn run(args: SendArgs) -> Result<(), SendError> {
    let config = SendConfig::try_from(args)?;
    let stdout = io::stdout();
    match send(&config, &mut stdout.lock()) {
        // Whoever reads our output has gone (`selectd send .. | head`): they
        // have what they wanted, so this is success, as in ripgrep.
        Err(SendError::Local { what, source })
            if what == WRITE_STDOUT && source.kind() == io::ErrorKind::BrokenPipe =>
        {
            Ok(())
        }
        result => result,
    }
}

/// Connects to `config.addr`, sends the payload while writing whatever
/// arrives to `out`, and returns when the peer closes its side.
///
/// A [`Payload::Stdin`] is read from this process's standard input by a
/// helper thread. If the peer closes first, that thread may stay blocked in
/// `read` until more input comes or the process exits; `selectd` exits.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpListener;
/// use std::time::Duration;
/// use selectd::send::{Payload, SendConfig, send};
///
/// // A one-shot echo server: read until our shutdown(SHUT_WR), answer, close.
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?.to_string().parse()?;
/// std::thread::spawn(move || -> std::io::Result<()> {
///     let (mut peer, _) = listener.accept()?;
///     let mut request = Vec::new();
///     peer.read_to_end(&mut request)?;
///     peer.write_all(&request)
/// });
///
/// let config = SendConfig {
///     addr,
///     payload: Payload::Bytes(b"ping\n".to_vec()),
///     timeout: Duration::from_secs(20),
///     shutdown: true,
/// };
/// let mut out = Vec::new();
/// send(&config, &mut out)?;
/// assert_eq!(out, b"ping\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send(config: &SendConfig, out: &mut dyn Write) -> Result<(), SendError> {
    let name = spell(&config.addr);
    // Fields are public, so a caller may have skipped the check in `try_from`.
    let timeout = config.timeout.min(LONGEST_TIMEOUT);
    let socket = connect(&config.addr, &name, Instant::now() + timeout, timeout)?;
    let stream = into_stream(socket, &config.addr).map_err(|source| SendError::Socket {
        addr: name.clone(),
        doing: "connect to",
        source,
    })?;
    log::info!("connected to {name}");
    Session::new(stream, name, timeout, config)?.run(out)
}

/// The address as people write it, without the `tcp://` of [`Address`]'s
/// `Display`: `127.0.0.1:9`, `[::1]:9`, `unix:/run/s.sock`.
fn spell(addr: &Address) -> String {
    match addr {
        Address::Tcp { host, port } | Address::Udp { host, port } if host.contains(':') => {
            format!("[{host}]:{port}")
        }
        Address::Tcp { host, port } | Address::Udp { host, port } => format!("{host}:{port}"),
        Address::Unix(_) => addr.to_string(),
    }
}

/// Resolves and connects before `deadline`: the seed's `settimeout` and
/// `connect`. Each resolved address is tried in turn; the last failure wins.
fn connect(
    addr: &Address,
    name: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Socket, SendError> {
    let timed_out = || SendError::TimedOut {
        addr: name.to_string(),
        after: timeout,
    };
    let targets: Vec<SockAddr> = match addr {
        Address::Unix(path) => vec![SockAddr::unix(path).map_err(|source| SendError::Socket {
            addr: name.to_string(),
            doing: "connect to",
            source,
        })?],
        _ => resolve(addr, name, deadline, timeout)?
            .into_iter()
            .map(SockAddr::from)
            .collect(),
    };
    let mut last = None;
    for target in &targets {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out());
        }
        let attempt = Socket::new(target.domain(), Type::STREAM, None)
            .and_then(|socket| socket.connect_timeout(target, remaining).map(|()| socket));
        match attempt {
            Ok(socket) => return Ok(socket),
            Err(error) => {
                log::debug!("connect to {name} via {target:?} failed: {error}");
                last = Some(error);
            }
        }
    }
    // `resolve` never returns an empty list, but an error beats a panic.
    let error =
        last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to"));
    Err(match error.kind() {
        io::ErrorKind::ConnectionRefused => SendError::Refused {
            addr: name.to_string(),
        },
        io::ErrorKind::TimedOut => timed_out(),
        _ => SendError::Socket {
            addr: name.to_string(),
            doing: "connect to",
            source: error,
        },
    })
}

/// Resolves on a helper thread and waits for it at most until `deadline`.
///
/// `getaddrinfo` blocks and cannot be cancelled; when it is too slow we stop
/// waiting and leave the thread to finish on its own.
fn resolve(
    addr: &Address,
    name: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, SendError> {
    let (tx, rx) = mpsc::channel();
    let owned = addr.clone();
    thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            // The receiver may have given up already; nobody to tell.
            let _ = tx.send(owned.resolve());
        })
        .map_err(|source| SendError::Local {
            what: "start the resolver thread",
            source,
        })?;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(source)) => Err(SendError::Resolve {
            addr: name.to_string(),
            source,
        }),
        Err(RecvTimeoutError::Timeout) => Err(SendError::TimedOut {
            addr: name.to_string(),
            after: timeout,
        }),
        Err(RecvTimeoutError::Disconnected) => Err(SendError::Resolve {
            addr: name.to_string(),
            source: io::Error::other("resolver thread ended without an answer"),
        }),
    }
}

/// Hands the connected socket to mio, in whichever family the address named.
fn into_stream(socket: Socket, addr: &Address) -> io::Result<Stream> {
    socket.set_nonblocking(true)?;
    Ok(match addr {
        Address::Unix(_) => Stream::Unix(mio::net::UnixStream::from_std(socket.into())),
        _ => Stream::Tcp(mio::net::TcpStream::from_std(socket.into())),
    })
}

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);

/// Bytes per `read` from the socket or from standard input. 64 KiB moves
/// bulk data in few system calls and is nothing next to the socket buffers.
const CHUNK: usize = 64 * 1024;

/// Reads (or writes) per turn of the loop before the other direction gets
/// its go: 16 × [`CHUNK`] = 1 MiB. A server that talks without pause cannot
/// starve our sending, nor a fast input our receiving.
const TURN: usize = 16;

/// How much one turn of [`Session::receive`] or [`Session::transmit`] moved.
struct Moved {
    bytes: usize,
    /// The turn ended on its budget, not on `WouldBlock`: there may be more
    /// to do at once, and with edge-triggered readiness no event will say so.
    more: bool,
}

/// Chunks standard input may run ahead of the socket: with [`CHUNK`], at most
/// 256 KiB waits in the channel however large the input.
const STDIN_AHEAD: usize = 4;

/// What the standard input thread hands over.
enum Piece {
    Data(Vec<u8>),
    End,
    Failed(io::Error),
}

/// Where the next outgoing bytes come from.
enum Source {
    /// Everything is in `pending` already.
    Fixed,
    /// More may come from the standard input thread.
    Stdin(Receiver<Piece>),
    /// The input has ended.
    Done,
}

/// One connection's life: the seed's `sendall`, `shutdown` and `recv` loop,
/// interleaved.
struct Session {
    name: String,
    stream: Stream,
    poll: Poll,
    timeout: Duration,
    shutdown: bool,
    /// Bytes taken from the input but not yet accepted by the socket.
    pending: Vec<u8>,
    /// How much of `pending` has been written.
    sent: usize,
    source: Source,
    /// The write side is finished: shut down, or left open by `--no-shutdown`.
    write_done: bool,
    /// Held here as well as by the standard input thread: when that thread
    /// ends, its copy is dropped, and if it were the last, closing the waker
    /// would take its final, still unseen wake-up out of the poll with it.
    _waker: Option<Arc<Waker>>,
}

impl Session {
    fn new(
        mut stream: Stream,
        name: String,
        timeout: Duration,
        config: &SendConfig,
    ) -> Result<Session, SendError> {
        let poll_failed = |source| SendError::Local {
            what: "set up poll",
            source,
        };
        let poll = Poll::new().map_err(poll_failed)?;
        // Both interests at once and never changed: mio is edge-triggered, so
        // an idle writable socket costs no wake-ups.
        poll.registry()
            .register(&mut stream, SOCKET, Interest::READABLE | Interest::WRITABLE)
            .map_err(poll_failed)?;
        let (pending, source, waker) = match &config.payload {
            Payload::Bytes(bytes) => (bytes.clone(), Source::Fixed, None),
            Payload::Stdin => {
                let waker = Arc::new(Waker::new(poll.registry(), STDIN).map_err(poll_failed)?);
                let rx = spawn_stdin_reader(Arc::clone(&waker))?;
                (Vec::new(), Source::Stdin(rx), Some(waker))
            }
        };
        Ok(Session {
            name,
            stream,
            poll,
            timeout,
            shutdown: config.shutdown,
            pending,
            sent: 0,
            source,
            write_done: false,
            _waker: waker,
        })
    }

    /// The loop: receive, send, then sleep until the socket or standard
    /// input has news, or the progress deadline passes.
    ///
    /// With only two sources, every wake-up simply tries both directions;
    /// an attempt that would block costs one system call and proves nothing
    /// is lost to edge-triggering, since each side is drained to `WouldBlock`.
    fn run(mut self, out: &mut dyn Write) -> Result<(), SendError> {
        let mut events = Events::with_capacity(8);
        let mut buf = vec![0; CHUNK];
        let mut last_progress = Instant::now();
        loop {
            // Read before write: what the server has already said is free to
            // print, and reading first makes room for it to read our data.
            let Some(received) = self.receive(&mut buf, out)? else {
                log::info!("{} closed the connection", self.name);
                return Ok(());
            };
            let sent = self.transmit()?;
            let now = Instant::now();
            if received.bytes + sent.bytes > 0 {
                last_progress = now;
            }
            let deadline = last_progress + self.timeout;
            if now >= deadline {
                return Err(SendError::TimedOut {
                    addr: self.name,
                    after: self.timeout,
                });
            }
            // Work left over from a turn cut short: look for events, but
            // do not sleep.
            let wait = if received.more || sent.more {
                Duration::ZERO
            } else {
                deadline - now
            };
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                // A signal arrived; not a failure, look again.
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SendError::Local {
                        what: "poll",
                        source,
                    });
                }
            }
        }
    }

    /// The seed's `recv` loop: read the socket until `WouldBlock` (or the
    /// turn's budget), copying everything to `out`. `None` when the peer has
    /// closed its side (the seed's `if not cevap: break`).
    fn receive(&mut self, buf: &mut [u8], out: &mut dyn Write) -> Result<Option<Moved>, SendError> {
        let mut moved = Moved {
            bytes: 0,
            more: true,
        };
        let mut reads = 0;
        let result = loop {
            if reads == TURN {
                break Ok(Some(moved));
            }
            match self.stream.read(buf) {
                Ok(0) => break Ok(None),
                Ok(n) => {
                    out.write_all(&buf[..n]).map_err(stdout_failed)?;
                    moved.bytes += n;
                    reads += 1;
                }
                // Would block "errors" are the OS's way of saying that the
                // connection is not actually ready to perform this I/O operation.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    moved.more = false;
                    break Ok(Some(moved));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => break Err(self.failed("receive from", source)),
            }
        };
        // Flush once per turn: prompt for a person watching, cheap in bulk.
        out.flush().map_err(stdout_failed)?;
        result
    }

    /// The seed's `sendall`, without blocking: write pending bytes, taking
    /// more input as it comes, until the socket would block, the input has
    /// nothing ready, or the turn's budget is spent. At the end of the
    /// input, `shutdown(SHUT_WR)`.
    fn transmit(&mut self) -> Result<Moved, SendError> {
        let mut moved = Moved {
            bytes: 0,
            more: false,
        };
        let mut writes = 0;
        while !self.write_done {
            if writes == TURN {
                moved.more = true;
                break;
            }
            if self.sent == self.pending.len() && !self.refill()? {
                break;
            }
            if self.sent == self.pending.len() {
                // The input has ended and all of it is written.
                self.write_done = true;
                if self.shutdown {
                    match self.stream.shutdown_write() {
                        Ok(()) => log::debug!("shut down the write side to {}", self.name),
                        // The peer reset the connection first, so there is no
                        // write side left to shut; the socket's pending error
                        // (`SO_ERROR`) says why, which is what the user needs.
                        Err(error) if error.kind() == io::ErrorKind::NotConnected => {
                            let cause = self.stream.take_error().ok().flatten();
                            return Err(self.failed("send to", cause.unwrap_or(error)));
                        }
                        Err(source) => return Err(self.failed("send to", source)),
                    }
                }
                break;
            }
            match self.stream.write(&self.pending[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    moved.bytes += n;
                    writes += 1;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.failed("send to", source)),
            }
        }
        Ok(moved)
    }

    /// Moves the next input chunk into `pending`. Returns `false` when there
    /// is nothing to send yet; `true` when there is data, or the input has
    /// ended (then `pending` stays empty).
    fn refill(&mut self) -> Result<bool, SendError> {
        self.pending.clear();
        self.sent = 0;
        let piece = match &self.source {
            Source::Fixed | Source::Done => Piece::End,
            Source::Stdin(rx) => match rx.try_recv() {
                Ok(piece) => piece,
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => {
                    Piece::Failed(io::Error::other("standard input thread ended unexpectedly"))
                }
            },
        };
        match piece {
            Piece::Data(bytes) => self.pending = bytes,
            Piece::End => self.source = Source::Done,
            Piece::Failed(source) => {
                return Err(SendError::Local {
                    what: "read standard input",
                    source,
                });
            }
        }
        Ok(true)
    }

    fn failed(&self, doing: &'static str, source: io::Error) -> SendError {
        SendError::Socket {
            addr: self.name.clone(),
            doing,
            source,
        }
    }
}

const WRITE_STDOUT: &str = "write standard output";

fn stdout_failed(source: io::Error) -> SendError {
    SendError::Local {
        what: WRITE_STDOUT,
        source,
    }
}

/// Starts the thread that reads standard input with plain blocking reads and
/// passes chunks to the loop through a channel of [`STDIN_AHEAD`] places.
fn spawn_stdin_reader(waker: Arc<Waker>) -> Result<Receiver<Piece>, SendError> {
    let (tx, rx) = mpsc::sync_channel(STDIN_AHEAD);
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(&tx, &waker))
        .map_err(|source| SendError::Local {
            what: "start the standard input thread",
            source,
        })?;
    Ok(rx)
}

fn read_stdin(tx: &SyncSender<Piece>, waker: &Waker) {
    let mut stdin = io::stdin().lock();
    loop {
        let mut chunk = vec![0; CHUNK];
        let piece = match stdin.read(&mut chunk) {
            Ok(0) => Piece::End,
            Ok(n) => {
                chunk.truncate(n);
                Piece::Data(chunk)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => Piece::Failed(error),
        };
        let last = !matches!(piece, Piece::Data(_));
        // The loop has finished and dropped the receiver: nobody to feed.
        if tx.send(piece).is_err() {
            return;
        }
        if let Err(error) = waker.wake() {
            log::error!("cannot wake the send loop: {error}");
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(addr: &str) -> SendArgs {
        SendArgs {
            addr: addr.to_string(),
            data: None,
            http: None,
            timeout: "20s".to_string(),
            no_shutdown: false,
        }
    }

    #[test]
    fn escapes_become_bytes() {
        assert_eq!(unescape(r"a\nb\r\n\t\\\0"), b"a\nb\r\n\t\\\0");
        assert_eq!(unescape(r"\x41\x7e"), b"A~");
        assert_eq!(unescape(r"\q\x4"), b"\\q\\x4");
        assert_eq!(unescape("trailing\\"), b"trailing\\");
        assert_eq!(unescape("ünï"), "ünï".as_bytes());
    }

    #[test]
    fn http_request_is_well_formed() {
        let tcp = "127.0.0.1:8000".parse().expect("parses");
        assert_eq!(
            http_request(&tcp, "/index.html").expect("valid"),
            b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        );
        let v6 = "[::1]:80".parse().expect("parses");
        assert_eq!(
            http_request(&v6, "/").expect("valid"),
            b"GET / HTTP/1.0\r\nHost: [::1]\r\n\r\n"
        );
        for bad in ["", "/a b", "/a\r\nX: y"] {
            assert_eq!(http_request(&tcp, bad).map_err(|e| e.exit_code()), Err(2));
        }
    }

    #[test]
    fn udp_and_zero_timeout_are_usage_errors() {
        let err = SendConfig::try_from(args("udp://127.0.0.1:9")).expect_err("udp refused");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("udp://127.0.0.1:9"), "{err}");
        let mut zero = args("127.0.0.1:9");
        zero.timeout = "0".to_string();
        assert_eq!(
            SendConfig::try_from(zero).map_err(|e| e.exit_code()).err(),
            Some(2)
        );
    }

    #[test]
    fn huge_timeouts_are_usage_errors_and_never_overflow() {
        let mut huge = args("127.0.0.1:9");
        huge.timeout = "9999999999999999999s".to_string();
        let err = SendConfig::try_from(huge).expect_err("refused");
        assert_eq!(err.exit_code(), 2);
        assert!(Instant::now().checked_add(LONGEST_TIMEOUT).is_some());
    }

    #[test]
    fn messages_name_address_and_reason() {
        let refused = SendError::Refused {
            addr: "127.0.0.1:9".into(),
        };
        assert_eq!(refused.to_string(), "connection to 127.0.0.1:9 refused");
        let timed_out = SendError::TimedOut {
            addr: "127.0.0.1:41000".into(),
            after: Duration::from_millis(500),
        };
        assert_eq!(
            timed_out.to_string(),
            "timed out after 500ms waiting for 127.0.0.1:41000"
        );
        let reset = SendError::Socket {
            addr: "[::1]:7".into(),
            doing: "receive from",
            source: io::ErrorKind::ConnectionReset.into(),
        };
        assert_eq!(reset.to_string(), "connection to [::1]:7 reset by peer");
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            SendError::Local {
                what: "poll",
                source: io::ErrorKind::Other.into(),
            },
            SendError::Usage(String::new()),
            SendError::Resolve {
                addr: String::new(),
                source: io::ErrorKind::NotFound.into(),
            },
            SendError::Refused {
                addr: String::new(),
            },
            SendError::TimedOut {
                addr: String::new(),
                after: Duration::ZERO,
            },
            SendError::Socket {
                addr: String::new(),
                doing: "",
                source: io::ErrorKind::Other.into(),
            },
        ]
        .map(|e| e.exit_code());
        assert_eq!(codes, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn addresses_are_spelled_as_typed() {
        let spelled = |text: &str| spell(&text.parse().expect("parses"));
        assert_eq!(spelled("tcp://127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(spelled("[::1]:9"), "[::1]:9");
        assert_eq!(spelled("unix:/tmp/s"), "unix:/tmp/s");
    }
}
