//! One connection's life: the notes' `sendall`, `shutdown` and `recv`,
//! interleaved in one small mio loop.
//!
//! # Taking turns
//!
//! Each turn of the loop reads at most 1 MiB, then writes at most 1 MiB, then
//! polls (without sleeping if a side stopped on its budget). Draining one
//! side to `WouldBlock` first would let a server that never pauses starve
//! our sending, so that it never hears the `stop` we are trying to send.
//! Standard output is written with blocking writes from the loop: a slow
//! reader of our output slows us, and through us the server, which is the
//! back-pressure we want.
//!
//! # Time-outs
//!
//! After the connect, `--timeout` bounds every wait for progress: if no byte
//! moves across the socket in either direction for that long, we give up.

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use super::config::{Payload, SendConfig};
use super::error::SendError;
use super::stdin::{CHUNK, Piece, spawn_stdin_reader};
use crate::net::drain::{Drained, read_until_would_block};
use crate::net::stream::Stream;

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);

/// Writes per turn of the loop before the other direction gets its go:
/// 16 × [`CHUNK`] = 1 MiB. A server that talks without pause cannot starve
/// our sending, nor a fast input our receiving.
const TURN: usize = 16;

/// Bytes read from the socket per turn: the same 1 MiB.
const READ_BUDGET: usize = TURN * CHUNK;

/// How much one turn of [`Session::receive`] or [`Session::transmit`] moved.
struct Moved {
    bytes: usize,
    /// The turn ended on its budget, not on `WouldBlock`: there may be more
    /// to do at once, and with edge-triggered readiness no event will say so.
    more: bool,
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

/// One connection's life: the notes' `sendall`, `shutdown` and `recv` loop,
/// interleaved.
pub(super) struct Session {
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
    pub(super) fn new(
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
    pub(super) fn run(mut self, out: &mut dyn Write) -> Result<(), SendError> {
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

    /// The notes' `recv` loop: read the socket until `WouldBlock` (or the
    /// turn's budget), copying everything to `out`. `None` when the peer has
    /// closed its side (the notes' `if not cevap: break`).
    fn receive(&mut self, buf: &mut [u8], out: &mut dyn Write) -> Result<Option<Moved>, SendError> {
        let mut bytes = 0;
        let drained = read_until_would_block(&mut self.stream, buf, READ_BUDGET, |chunk| {
            bytes += chunk.bytes.len();
            match out.write_all(chunk.bytes) {
                Ok(()) => ControlFlow::Continue(()),
                Err(err) => ControlFlow::Break(err),
            }
        });
        let more = match drained {
            Ok(Drained::Empty) => false,
            Ok(Drained::Budget) => true,
            Ok(Drained::Eof) => {
                out.flush().map_err(stdout_failed)?;
                return Ok(None);
            }
            Ok(Drained::Stopped(err)) => return Err(stdout_failed(err)),
            // TLS: the server closed without `close_notify`. Many do; what
            // arrived is printed, but it may be cut short: say so. Not
            // before the handshake is done, though: then nothing was
            // verified or sent, and the TLS connection failed.
            Err(source)
                if source.kind() == io::ErrorKind::UnexpectedEof
                    && !self.stream.is_handshaking() =>
            {
                log::warn!(
                    "{} closed the connection without TLS close_notify: the reply may be cut short",
                    self.name
                );
                out.flush().map_err(stdout_failed)?;
                return Ok(None);
            }
            Err(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
                let cut = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before the TLS handshake was done",
                );
                return Err(self.failed("receive from", cut));
            }
            Err(source) => {
                // What arrived before the failure is worth printing.
                out.flush().map_err(stdout_failed)?;
                return Err(self.failed("receive from", source));
            }
        };
        // Flush once per turn: prompt for a person watching, cheap in bulk.
        out.flush().map_err(stdout_failed)?;
        Ok(Some(Moved { bytes, more }))
    }

    /// The notes' `sendall`, without blocking: write pending bytes, taking
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
                // The input has ended and all of it is written. TLS: the
                // handshake, and what waits encrypted, go out before the
                // goodbye (`close_notify`); until then, wait.
                if self.stream.is_handshaking() || self.stream.wants_write() {
                    match self.stream.flush() {
                        Ok(()) => {}
                        // The server closed first (our data made it stop,
                        // say): what is left to send is only the session's
                        // own bookkeeping. What it sent us decides the end.
                        Err(error) if server_gone(&error) && !self.stream.is_handshaking() => {
                            log::debug!("{} closed before our TLS goodbye: {error}", self.name);
                            self.write_done = true;
                            break;
                        }
                        Err(source) => return Err(self.failed("send to", source)),
                    }
                    if self.stream.is_handshaking() || self.stream.wants_write() {
                        break;
                    }
                }
                // Nothing more to send.
                self.write_done = true;
                if self.shutdown {
                    match self.stream.shutdown_write() {
                        Ok(()) => log::debug!("shut down the write side to {}", self.name),
                        // The peer reset the connection first, so there is no
                        // write side left to shut; the socket's pending error
                        // (`SO_ERROR`) says why, which is what the user needs.
                        // TLS: `close_notify` is data; a server that already
                        // closed refuses it. What it sent us decides the end.
                        Err(error) if server_gone(&error) && self.stream.is_tls() => {
                            log::debug!("{} closed before our TLS goodbye: {error}", self.name);
                        }
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
        #[cfg(feature = "tls")]
        if crate::net::tls::is_tls_failure(&source) {
            return SendError::Tls {
                addr: self.name.clone(),
                source,
            };
        }
        SendError::Socket {
            addr: self.name.clone(),
            doing,
            source,
        }
    }
}

/// A write (or `shutdown`) found the peer closed (`EPIPE`) or reset.
fn server_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

pub(super) const WRITE_STDOUT: &str = "write standard output";

fn stdout_failed(source: io::Error) -> SendError {
    SendError::Local {
        what: WRITE_STDOUT,
        source,
    }
}
