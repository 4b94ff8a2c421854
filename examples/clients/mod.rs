//! What `select_server.rs` and `poll_server.rs` share: the flags, and one
//! client of a hand-written readiness loop, speaking `selectd serve`'s line
//! protocol.
//!
//! The two examples differ only in how they *wait*: one calls `select(2)`,
//! the other `poll(2)`. Everything a client does once the kernel has said
//! "readable" or "writable" lives here, so that the two loops can be read
//! side by side and differ only where the system calls differ.
//!
//! Both loops are **level-triggered**, as the notes' `select()` is: a socket
//! with bytes left unread is reported again on the next call. So a client
//! reads *once* per readiness (not until `WouldBlock`, as selectd must with
//! edge-triggered epoll), and anything left over waits for the next turn.
//!
//! The protocol, as `selectd serve --format tagged` prints it (the framing,
//! commands and escaping are selectd's own `proto` module):
//!
//! - each line a client sends is printed as `[PEER] line`, escaped;
//! - `* [PEER] open` and `* [PEER] close: REASON` around each client;
//! - `disconnect` closes that client; `stop` (from a loopback peer) stops
//!   the server: every client is closed (`close: stop`) and it exits 0;
//! - a client silent for `--idle-timeout` is closed (`close: idle`);
//! - with `--echo`, every line is written back, byte for byte.

// Each example uses most of this module, not all of it.
#![allow(dead_code)]

use std::io::{self, BufWriter, ErrorKind, Read, StdoutLock, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use selectd::proto::command::Command;
use selectd::proto::{LineBuffer, write_escaped};

/// The longest line, as `selectd serve`'s default `--max-line`.
pub const MAX_LINE: usize = 64 * 1024;

/// Read at most this much per client per turn: the notes' `recv(1024)`,
/// made larger so that a busy client needs fewer turns.
pub const READ_SIZE: usize = 64 * 1024;

/// Stop reading from a client while this much of its echo waits to be
/// written (selectd's `--high-watermark`): a client that sends but never
/// reads must not grow our memory without bound.
pub const HIGH_WATERMARK: usize = 1 << 20;

/// The flags both examples take, spelled as `selectd serve` spells them.
pub struct Options {
    /// `--listen ADDR` (default the notes' port on loopback, `127.0.0.1:10001`).
    pub listen: SocketAddr,
    /// `--idle-timeout DUR|off` (default the notes' `TIMEOUT = 5`).
    pub idle_timeout: Option<Duration>,
    /// `--echo`: write every line back.
    pub echo: bool,
    /// `--format tagged|none`: `none` prints nothing (for benchmarks).
    pub quiet: bool,
    /// `--hold-fds N`: open N descriptors before serving, so clients'
    /// descriptors start above them (a way to meet `FD_SETSIZE` with a few
    /// clients).
    pub hold_fds: usize,
}

impl Options {
    /// Parses the command line; the error is one line, for `usage`.
    pub fn from_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            listen: ([127, 0, 0, 1], 10001).into(),
            idle_timeout: Some(Duration::from_secs(5)),
            echo: false,
            quiet: false,
            hold_fds: 0,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--listen" => {
                    let text = value()?;
                    options.listen = text.parse().map_err(|_| {
                        format!("--listen: invalid address '{text}' (expected IP:PORT)")
                    })?;
                }
                "--idle-timeout" => {
                    let text = value()?;
                    options.idle_timeout = selectd::net::units::parse_optional_duration(&text)
                        .map_err(|err| format!("--idle-timeout: {err}"))?;
                }
                "--echo" => options.echo = true,
                "--format" => match value()?.as_str() {
                    "tagged" => options.quiet = false,
                    "none" => options.quiet = true,
                    other => return Err(format!("--format: '{other}' (expected tagged or none)")),
                },
                "--hold-fds" => {
                    let text = value()?;
                    options.hold_fds = text
                        .parse()
                        .map_err(|_| format!("--hold-fds: invalid number '{text}'"))?;
                }
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        Ok(options)
    }
}

/// An example's `main`: parses the flags (exit 2 and the usage on a bad
/// one), runs `serve`, and turns an error into one line on stderr and exit 1.
pub fn run(name: &str, serve: fn(&Options) -> io::Result<()>) -> std::process::ExitCode {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{name}: {message}");
            eprintln!(
                "usage: {name} [--listen ADDR] [--idle-timeout DUR|off] [--echo] [--format tagged|none] [--hold-fds N]"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match serve(&options) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, as
/// `selectd serve` does: the default soft limit is often exactly 1024, and
/// a server should meet its own limits (`FD_SETSIZE` for select, none for
/// poll), not that one.
pub fn raise_fd_limit() {
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the descriptor limit: {err}");
    }
}

/// Opens `n` descriptors (of `/dev/null`) and keeps them: the next ones
/// the kernel hands out (it always picks the lowest free number) are above.
pub fn hold_fds(n: usize) -> io::Result<Vec<std::fs::File>> {
    (0..n).map(|_| std::fs::File::open("/dev/null")).collect()
}

/// The notes' `socket()`, `setsockopt(SO_REUSEADDR)`, `bind()` and
/// `listen()`, then `setblocking(0)`: `accept` must never park the loop.
pub fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        None,
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&listen.into())
        .map_err(|err| io::Error::new(err.kind(), format!("cannot bind {listen}: {err}")))?;
    // The notes' backlog is 5; a loop that accepts everyone at once only
    // needs the backlog to absorb a burst between two turns.
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Accepts one waiting client, made non-blocking; `Ok(None)` when nobody
/// waits (`WouldBlock`, the non-blocking `accept`'s "nothing now").
pub fn accept(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    loop {
        return match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(true)?;
                stream.set_nodelay(true)?;
                Ok(Some((stream, peer)))
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            // The client gave up while it waited in the backlog.
            Err(err) if err.kind() == ErrorKind::ConnectionAborted => continue,
            Err(err) => Err(err),
        };
    }
}

/// Where the loop prints: stdout, buffered, written once per turn just
/// before the loop waits (as selectd's output does; selectd also moves the
/// blocking write to a thread of its own, which these examples do not).
pub struct Printer {
    out: BufWriter<StdoutLock<'static>>,
    quiet: bool,
}

impl Printer {
    pub fn new(quiet: bool) -> Printer {
        Printer {
            out: BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
            quiet,
        }
    }

    /// `[PEER] line`, escaped as selectd escapes it.
    pub fn line(&mut self, peer: SocketAddr, text: &[u8]) {
        if self.quiet {
            return;
        }
        let _ = write!(self.out, "[{peer}] ");
        let _ = write_escaped(&mut self.out, text, false);
        let _ = self.out.write_all(b"\n");
    }

    /// `* [PEER] open`, `* [PEER] close: eof`.
    pub fn event(&mut self, peer: SocketAddr, what: &str) {
        if !self.quiet {
            let _ = writeln!(self.out, "* [{peer}] {what}");
        }
    }

    /// Writes what this turn printed; an error ends the server.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// What a client asks of the loop after a turn.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Keep it.
    Open,
    /// Close it, for this reason (printed as `close: REASON`).
    Closed(&'static str),
    /// It said `stop`: close everyone and exit.
    Stop,
}

/// One connected client: its socket, its unfinished line, its unsent echo.
pub struct Client {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    lines: LineBuffer,
    /// Echo bytes the socket did not take yet.
    out: Vec<u8>,
    /// The client finished sending (EOF): flush `out`, then close.
    done: bool,
    /// When it last sent something: its idle deadline is this plus the time-out.
    pub last_active: Instant,
}

impl Client {
    pub fn new(stream: TcpStream, peer: SocketAddr, now: Instant) -> Client {
        Client {
            stream,
            peer,
            lines: LineBuffer::new(MAX_LINE),
            out: Vec::new(),
            done: false,
            last_active: now,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Whether the loop should ask the kernel about reading: not once the
    /// client has finished, nor while too much of its echo is unsent
    /// (backpressure: its bytes wait in the kernel, and TCP slows it down).
    pub fn wants_read(&self) -> bool {
        !self.done && self.out.len() < HIGH_WATERMARK
    }

    /// Whether to ask about writing: only while echo bytes wait. A socket
    /// with room to write is "writable" nearly all the time, and a
    /// level-triggered loop that asked anyway would never sleep.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// The kernel said "readable": one read, then every complete line in it.
    pub fn on_readable(
        &mut self,
        scratch: &mut [u8],
        print: &mut Printer,
        echo: bool,
        now: Instant,
    ) -> Outcome {
        // data = cnn.recv(1024)
        let n = match self.stream.read(scratch) {
            // The notes' server never checks for '' and spins at EOF;
            // here the end of the stream finishes the last line, then the
            // client (once its echo is written).
            Ok(0) => return self.on_eof(print, echo, now),
            Ok(n) => {
                self.last_active = now;
                n
            }
            // Readiness is a hint: the bytes may be gone (spurious).
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Outcome::Open,
            Err(err) if err.kind() == ErrorKind::Interrupted => return Outcome::Open,
            Err(err) => return Outcome::Closed(reason(&err)),
        };
        let mut outcome = Outcome::Open;
        let chunk = &scratch[..n];
        // The notes compare the whole chunk with 'disconnect\r\n'; here the
        // bytes are framed into lines, however the reads cut them.
        let fed = self.lines.feed(chunk, |line| {
            outcome = act(
                line.text,
                line.raw,
                line.is_whole(),
                self.peer,
                print,
                echo,
                &mut self.out,
            );
            if outcome == Outcome::Open {
                std::ops::ControlFlow::Continue(())
            } else {
                std::ops::ControlFlow::Break(())
            }
        });
        if fed.is_err() {
            self.out.extend_from_slice(selectd::serve::LINE_TOO_LONG);
            let _ = self.flush(now);
            return Outcome::Closed("line-too-long");
        }
        if outcome != Outcome::Open {
            return outcome;
        }
        self.on_writable(now)
    }

    /// End of stream: an unfinished last line is still a line (as in
    /// `selectd serve`), then the client is done.
    fn on_eof(&mut self, print: &mut Printer, echo: bool, now: Instant) -> Outcome {
        let mut outcome = Outcome::Open;
        let _ = self.lines.finish(|line| {
            outcome = act(
                line.text,
                line.raw,
                line.is_whole(),
                self.peer,
                print,
                echo,
                &mut self.out,
            );
            std::ops::ControlFlow::Continue(())
        });
        if outcome != Outcome::Open {
            return outcome;
        }
        self.done = true;
        self.on_writable(now)
    }

    /// The kernel said "writable" (or a turn queued echo): write what waits.
    pub fn on_writable(&mut self, now: Instant) -> Outcome {
        if let Err(err) = self.flush(now) {
            return Outcome::Closed(reason(&err));
        }
        if self.done && self.out.is_empty() {
            return Outcome::Closed("eof");
        }
        Outcome::Open
    }

    /// The notes' `send`, with "the rest" kept: writes until the socket
    /// takes no more (`WouldBlock`), and keeps what it did not take.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        if written > 0 {
            // Bytes moved: the client is not idle, even if it is held back
            // from sending (backpressure) while its echo drains.
            self.last_active = now;
            self.out.drain(..written);
        }
        Ok(())
    }
}

/// What one line means: the notes' `if data == 'disconnect\r\n'`, `if
/// data == 'stop\r\n'` and `print data.strip()`, on whole lines.
fn act(
    text: &[u8],
    raw: &[u8],
    whole: bool,
    peer: SocketAddr,
    print: &mut Printer,
    echo: bool,
    out: &mut Vec<u8>,
) -> Outcome {
    match Command::parse(text).filter(|_| whole) {
        // if data == 'disconnect\r\n': break
        Some(Command::Disconnect) => Outcome::Closed("disconnect"),
        // if data == 'stop\r\n': devam = False
        //
        // Only from this machine: the notes let anyone stop the server.
        Some(Command::Stop) if is_local(peer.ip()) => Outcome::Stop,
        Some(Command::Stop) => {
            out.extend_from_slice(selectd::serve::STOP_NOT_LOCAL);
            Outcome::Open
        }
        // print data.strip(); `stats` is selectd's alone, so a line here.
        Some(Command::Stats) | None => {
            print.line(peer, text);
            if echo {
                out.extend_from_slice(raw);
            }
            Outcome::Open
        }
    }
}

/// Loopback, IPv4 or IPv6 (an IPv4-mapped loopback too).
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The close reason for a failed read or write, as selectd names them.
fn reason(err: &io::Error) -> &'static str {
    match err.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => "reset",
        ErrorKind::BrokenPipe => "broken-pipe",
        _ => "error",
    }
}

/// The time-out to pass to `select`/`poll`: until the nearest idle
/// deadline (the notes' `TIMEOUT`, per client), rounded up to a whole
/// millisecond so the loop never wakes a fraction early and spins; `None`
/// (wait forever) without a time-out or clients.
///
/// A scan of every client, like the calls themselves: selectd keeps its
/// deadlines in activity order instead, and reads the nearest in O(1).
pub fn nearest_deadline(
    clients: &[Client],
    idle: Option<Duration>,
    now: Instant,
) -> Option<Duration> {
    let idle = idle?;
    let oldest = clients.iter().map(|client| client.last_active).min()?;
    let left = (oldest + idle).saturating_duration_since(now);
    Some(Duration::from_millis(left.as_micros().div_ceil(1000) as u64))
}

/// Whether `client` has been silent for the idle time-out at `now`.
pub fn is_idle(client: &Client, idle: Option<Duration>, now: Instant) -> bool {
    idle.is_some_and(|idle| now.duration_since(client.last_active) >= idle)
}
