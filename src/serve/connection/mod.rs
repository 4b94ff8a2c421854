//! One client's life, from `accept` to `close`.
//!
//! The notes' server's inner loop is one connection's whole life:
//!
//! ```python
//! while True:
//!     (inp, out, exp) = select.select([cnn,], [], [], TIMEOUT)
//!     if not inp: break                  # idle: drop the client
//!     data = cnn.recv(1024)
//!     if data == 'disconnect\r\n': break
//!     if data == 'stop\r\n': devam = False; break
//!     print data.strip()
//! cnn.close()
//! ```
//!
//! Here the same life is cut into the events the reactor delivers, in the
//! order they happen, so it reads top to bottom:
//!
//! 1. `Connection::new`: after `accept`, register for readability.
//! 2. `Connection::on_readable`: `recv` until the kernel has nothing more
//!    (or this turn's budget is spent), frame lines, act on each: print it,
//!    echo it, or obey a command.
//! 3. `Connection::on_writable`: send what an earlier `send` did not take.
//! 4. `Connection::on_stop`: the server is stopping: read what the client
//!    already sent, then finish.
//! 5. `Connection::close`: the single exit, printing and logging the reason.
//!
//! Idle time-outs are not here: the reactor owns the deadlines and closes
//! the connection with [`CloseReason::Idle`] (the notes' `if not inp: break`).
//!
//! # Writing without blocking
//!
//! Replies are written at once; what the socket does not take waits in the
//! connection's [`SendQueue`], which also says when to stop reading
//! (backpressure) and when to resume. The connection asks for `WRITABLE`
//! exactly while that queue is not empty.
//!
//! # Zero copies on the common path
//!
//! Reads go into one scratch buffer shared by every connection. Lines that
//! lie wholly inside a read are printed and echoed straight from it, and
//! consecutive echoed lines go out in one `write`. Bytes are copied into this
//! connection's own buffers only for a line split across reads, or for
//! output the socket did not take: in steady state, echoing allocates nothing.

use std::io::{self, Read};

use mio::{Interest, Token};

use crate::net::stream::{Peer, Stream};
use crate::proto::line::{LineBuffer, sole_line};
use crate::serve::close::CloseReason;
use crate::serve::context::Context;
use crate::serve::output::PeerLabel;
use crate::serve::proxy::PendingHeader;
use crate::serve::send_queue::SendQueue;

mod act;
mod clocks;
mod ending;
mod proxied;
mod state;
mod tls;

use act::Act;
pub use act::{STATS_NOT_LOCAL, STOP_NOT_LOCAL};
pub(crate) use clocks::LineTimer;
use clocks::NO_TIMED_LINE;
pub(crate) use state::State;

/// At most this many bytes are read from one connection per reactor turn,
/// so one flooding client cannot starve the others. A connection with more
/// to read goes on the reactor's ready queue for the next turn.
pub const READ_BUDGET: usize = 64 * 1024;

/// At `stop`, at most this much more is read from one client: everything a
/// kernel receive queue can hold, but not an endless stream. (With `--echo`
/// the watermarks stop it much sooner.)
const STOP_DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Whether a short TCP read may be taken to mean "nothing more queued" (see
/// `on_readable`). Only where urgent data is reported as an event (epoll's
/// `EPOLLPRI`, mio's `PRIORITY`): elsewhere every read goes on to `WouldBlock`.
/// Never for Unix sockets: their reads stop at every message that carries
/// descriptors (`SCM_RIGHTS`), with more queued behind it.
const SHORT_READ_SHORTCUT: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// What a connection always waits for: readability, and on Linux urgent
/// data, which cuts a read short at its mark.
#[cfg(any(target_os = "linux", target_os = "android"))]
const READ_INTEREST: Interest = Interest::READABLE.add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const READ_INTEREST: Interest = Interest::READABLE;

/// Sent to a client whose line is longer than `--max-line`, before closing.
pub const LINE_TOO_LONG: &[u8] = b"error: line too long\r\n";

/// What the reactor must do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Still open. `active`: bytes moved, so the idle deadline restarts.
    /// `again`: there may be more to read but the budget is spent (or
    /// reading just resumed), and edge-triggered readiness will not say so
    /// again: serve it next turn without waiting for an event.
    Open { active: bool, again: bool },
    /// Finished: call `Connection::close` with this reason.
    Closed(CloseReason),
}

/// One client: its socket, who it is, its buffers and its state.
#[derive(Debug)]
pub struct Connection {
    /// The connection's key in its loop's slab, and so its `Token`: 32
    /// bits, like the small fields beside it (see `tokens::is_connection_key`),
    /// so that the struct stays 8 bytes smaller.
    key: u32,
    stream: Stream,
    /// The peer may `stop` the server and read `stats` (it is on this
    /// machine: loopback or a Unix socket).
    local: bool,
    /// The peer as printed with every line, rendered once at accept (and
    /// again when a PROXY header names the client).
    label: PeerLabel,
    /// A partial line, if the last read ended mid-line.
    /// Allocated only while a line is held between reads (or handed out in
    /// pieces): `None` whenever every read ended with a whole line, which for
    /// an idle client is always.
    lines: Option<Box<LineBuffer>>,
    /// Output the socket has not taken yet (empty, and unallocated, almost always).
    out: SendQueue,
    state: State,
    /// The interest currently registered with the `Poll`.
    interest: Interest,
    /// A short read does not prove the socket's queue is empty: always so
    /// for a Unix socket (a read stops at a message carrying descriptors),
    /// and for TCP once an event said the peer shut down its side (the end
    /// of the stream must be read now, no further edge will come) or that
    /// urgent data arrived (a read stops at the urgent mark with more
    /// queued behind it).
    drain_fully: bool,
    /// A write or read failed: the peer is gone. What it sent is still
    /// printed, but nothing more is sent to it.
    peer_gone: bool,
    /// Which unfinished line the line-timeout clock is running for (by
    /// its number), or `NO_TIMED_LINE`.
    timed_line: u32,
    /// This client's `stop` was obeyed: however it ends (its EOF may be read
    /// before the server stops), it closes with reason `stop`.
    sent_stop: bool,
    /// From a trusted proxy, until its PROXY header is complete: the bytes
    /// so far. Until then nothing is framed, and `open` is not printed yet,
    /// so that every event names the client the header carries.
    proxy_header: Option<Box<PendingHeader>>,
    /// A PROXY header or a TLS handshake is (or was, until the loop has
    /// seen it end) on the clock: the loop looks at those clocks only then.
    setting_up: bool,
    /// While the loop reads no client (its output is full), how far this
    /// client's unread bytes were already looked through for a `stop`
    /// (see `stop_waiting_unread`): the end of the last whole line judged,
    /// or `LOOKED_THROUGH` when looking again cannot tell more until
    /// something is read. Every read starts it again at 0.
    looked_ahead: u8,
}

impl Connection {
    /// A freshly accepted client: register it for reading and print `open`.
    pub(crate) fn new(
        token: Token,
        mut stream: Stream,
        peer: Peer,
        ctx: &mut Context,
    ) -> io::Result<Connection> {
        let key = u32::try_from(token.0)
            .map_err(|_| io::Error::other("a connection's key must fit in 32 bits"))?;
        ctx.registry.register(&mut stream, token, READ_INTEREST)?;
        let label = ctx.output.label(&peer);
        let proxy_header = match &peer {
            Peer::Ip(addr) if ctx.config.proxy_protocol.trusts(addr.ip()) => Some(Box::default()),
            _ => None,
        };
        // TLS: `open` waits for the handshake (see `tls.rs`).
        if proxy_header.is_none() && !stream.is_handshaking() {
            ctx.output.open(&label);
        }
        log::debug!("{label}: open as {token:?}");
        let drain_fully = !SHORT_READ_SHORTCUT || !stream.short_read_means_empty();
        let handshaking = stream.is_handshaking();
        Ok(Connection {
            key,
            stream,
            local: peer.is_local(),
            label,
            lines: None,
            out: SendQueue::new(),
            state: if proxy_header.is_some() {
                State::AwaitingProxyHeader
            } else if handshaking {
                State::Handshaking
            } else {
                State::Reading
            },
            interest: READ_INTEREST,
            drain_fully,
            peer_gone: false,
            timed_line: NO_TIMED_LINE,
            sent_stop: false,
            setting_up: proxy_header.is_some() || handshaking,
            proxy_header,
            looked_ahead: 0,
        })
    }

    /// The connection's token: its key in the loop's slab.
    pub(crate) fn token(&self) -> Token {
        Token(self.key as usize)
    }

    /// Whether a set-up clock (PROXY header, TLS handshake) may still run
    /// for this client; `false` for good once the loop has seen both end.
    pub(crate) fn setting_up(&self) -> bool {
        self.setting_up
    }

    /// The loop has stopped the set-up clocks: neither is due any more.
    pub(crate) fn set_up(&mut self) {
        self.setting_up = false;
    }

    /// The peer as printed: `127.0.0.1:50312`, `[::1]:5`, `unix:/path`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Bytes waiting to be sent to this client.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Whether anything waits to be sent: queued replies, or (TLS)
    /// ciphertext the session holds, such as the handshake's.
    pub(crate) fn wants_write(&self) -> bool {
        !self.out.is_empty() || self.stream.wants_write()
    }

    /// The socket is readable: the notes' `recv`, repeated until the kernel
    /// says `WouldBlock` (edge-triggered readiness is reported once per
    /// change, so anything left unread would wait for an event that never
    /// comes), or until this turn's budget is spent.
    ///
    /// `drain_fully` is the event's word that the peer shut down its side
    /// or sent urgent data: then a short read proves nothing.
    pub(crate) fn on_readable(
        &mut self,
        ctx: &mut Context,
        scratch: &mut [u8],
        drain_fully: bool,
    ) -> Status {
        self.drain_fully |= drain_fully;
        // TLS: the handshake comes before any line (see `tls.rs`).
        if self.awaits_handshake() {
            match self.drive_handshake(ctx, scratch) {
                Err(reason) => return Status::Closed(reason),
                Ok(moved) if self.awaits_handshake() => return self.settle(ctx, moved, false),
                Ok(_) => {}
            }
        }
        if !self.state.reads() {
            // Backpressured or closing: the bytes stay in the kernel, which
            // in turn slows the client down (TCP flow control).
            return Status::Open {
                active: false,
                again: false,
            };
        }
        let mut budget = READ_BUDGET;
        let mut active = false;
        let mut again = false;
        loop {
            let want = scratch.len().min(budget);
            let n = match self.stream.read(&mut scratch[..want]) {
                Ok(0) => return self.on_eof(ctx),
                Ok(n) => n,
                // Would block "errors" are the OS's way of saying there is
                // nothing more to read right now.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.on_read_error(&err, ctx),
            };
            active = true;
            budget -= n;
            ctx.counters.bytes_in += n as u64;
            if let Err(reason) = self.receive(Some(&scratch[..n]), ctx) {
                return Status::Closed(reason);
            }
            if !self.state.reads() {
                break;
            }
            // A TCP read that did not fill the buffer emptied the socket's
            // receive queue: on epoll (and kqueue) a new arrival raises a
            // new edge, so the extra read that would only say `WouldBlock`
            // is skipped (tokio makes the same deduction). Not so once the
            // peer has closed (the end of stream was already announced and
            // must be read now) or sent urgent data, and never for a Unix
            // socket (see `drain_fully`). A descriptor a Unix client passes
            // is never ours: a plain `read` asks for no control data, so
            // the kernel closes it instead of installing it.
            if n < want && !self.drain_fully {
                break;
            }
            if budget == 0 {
                again = true;
                break;
            }
        }
        self.settle(ctx, active, again)
    }

    /// The socket is readable but the loop may not read now (its output is
    /// full): keep what the event said, for the read that comes later.
    pub(crate) fn defer_read(&mut self, drain_fully: bool) {
        self.drain_fully |= drain_fully;
    }

    /// The socket is writable: send what is waiting, and resume reading if
    /// backpressure eased.
    pub(crate) fn on_writable(&mut self, ctx: &mut Context) -> Status {
        // TLS: a handshake waiting for its flight to go out goes on.
        if self.awaits_handshake() {
            return match self.drive_handshake(ctx, &mut []) {
                Err(reason) => Status::Closed(reason),
                // Done: the client may have sent lines already; read them.
                Ok(moved) => self.settle(ctx, moved, !self.awaits_handshake()),
            };
        }
        // TLS: ciphertext the session holds goes before the queue (`flush`
        // is a no-op for plain sockets).
        let flushed = io::Write::flush(&mut self.stream);
        let active = match flushed.and_then(|()| self.out.flush(&mut self.stream)) {
            Ok(moved) => {
                ctx.counters.bytes_out += moved as u64;
                moved > 0
            }
            Err(err) => {
                let reason = self.write_failed(&err, ctx);
                self.drain_gone_peer(ctx);
                return Status::Closed(reason);
            }
        };
        let mut again = false;
        if self.state == State::HeldBack && self.out.is_at_low(ctx.config.low_watermark) {
            self.set_state(State::Reading, ctx.config.trace_loop);
            // Bytes may have waited in the kernel all along; no new edge
            // will announce them, so read them next turn.
            again = true;
        }
        self.settle(ctx, active, again)
    }

    /// The single exit: deregister, print the close event, log, drop the socket.
    ///
    /// Returns the socket if it should close with a linger (see `linger`):
    /// the server ended the conversation after telling the client why
    /// (`disconnect`, a line too long), so the client must get to read it.
    pub(crate) fn close(mut self, reason: CloseReason, ctx: &mut Context) -> Option<Stream> {
        let (registry, output) = (&ctx.registry, &mut ctx.output);
        if self.proxy_header.is_some() || self.stream.is_handshaking() {
            // It never named a client (or finished its TLS handshake): it
            // opens and closes as it stands.
            output.open(&self.label);
        } else if !self.peer_gone {
            // TLS: `close_notify` before the FIN (nothing for plain sockets).
            self.stream.close_notify();
        }
        if let Err(err) = registry.deregister(&mut self.stream) {
            log::debug!("{}: deregister failed: {err}", self.label);
        }
        if !self.out.is_empty() {
            log::warn!(
                "{}: closed ({reason}) with {} bytes of output unsent",
                self.label,
                self.out.len()
            );
        }
        output.close(&self.label, reason);
        log::info!("{}: closed ({reason}), {:?}", self.label, self.token());
        let last_words = matches!(reason, CloseReason::Disconnect | CloseReason::LineTooLong);
        (last_words && !self.peer_gone && self.out.is_empty()).then_some(self.stream)
        // Otherwise dropping the stream closes the socket (the notes' `close()`).
    }

    /// Frames one read's bytes and acts on each complete line; with `None`
    /// (end of input), acts on the unterminated last line, if any.
    fn receive(&mut self, chunk: Option<&[u8]>, ctx: &mut Context) -> Result<(), CloseReason> {
        // What was unread is now read, and the held line may change.
        self.looked_ahead = 0;
        let chunk = if self.proxy_header.is_some() {
            match self.take_proxy_header(chunk, ctx)? {
                Some(rest) => Some(rest),
                None => return Ok(()),
            }
        } else {
            chunk
        };
        // The line buffer, or a fresh one (no allocation) for a read that
        // starts with a new line; kept afterwards only if a line is held.
        // The common read, one whole line with nothing held before it,
        // needs neither.
        let max_line = ctx.config.max_line;
        let mut held = self.lines.take();
        let sole = match (chunk, &held) {
            (Some(chunk), None) => sole_line(chunk, max_line),
            _ => None,
        };
        let mut fresh = None;
        let token = self.token();
        let Connection {
            stream,
            local,
            label,
            out,
            peer_gone,
            sent_stop,
            ..
        } = self;
        let mut act = Act {
            token,
            stream,
            out,
            local: *local,
            label,
            sent_stop,
            ctx,
            chunk: chunk.unwrap_or_default(),
            echo_run: 0..0,
            next_state: None,
            failure: None,
            peer_gone: *peer_gone,
        };
        let framed = if let Some(line) = sole {
            Ok(act.on_line(line))
        } else {
            let lines = match held.as_deref_mut() {
                Some(lines) => lines,
                None => fresh.insert(LineBuffer::new(max_line)),
            };
            match chunk {
                Some(chunk) => lines.feed(chunk, |line| act.on_line(line)),
                None => lines.finish(|line| act.on_line(line)),
            }
        };
        act.flush_echo_run();
        if let Err(too_long) = framed {
            log::info!("{}: {too_long}", act.label);
            act.reply(LINE_TOO_LONG);
            act.next_state = Some(State::Closing(CloseReason::LineTooLong));
        }
        let (failure, next_state) = (act.failure, act.next_state);
        self.lines = match held {
            Some(lines) if !lines.is_idle() => Some(lines),
            _ => fresh.filter(|fresh| !fresh.is_idle()).map(Box::new),
        };
        if let Some(err) = failure {
            // A reply failed: the peer is gone, but every line of this read
            // was still printed, and so is what it sent after it.
            let reason = self.write_failed(&err, ctx);
            if chunk.is_some() {
                self.drain_gone_peer(ctx);
            }
            return Err(reason);
        }
        if let Some(next) = next_state {
            self.set_state(next, ctx.config.trace_loop);
        } else if self.state == State::Reading && self.out.is_over_high(ctx.config.high_watermark) {
            log::debug!(
                "{}: {} bytes unsent, pausing reads",
                self.label,
                self.out.len()
            );
            self.set_state(State::HeldBack, ctx.config.trace_loop);
        }
        Ok(())
    }

    /// After any event: close if a closing connection has flushed, and ask
    /// for `WRITABLE` exactly while output is waiting.
    fn settle(&mut self, ctx: &mut Context, active: bool, again: bool) -> Status {
        if !self.wants_write()
            && let State::Closing(reason) = self.state
        {
            return Status::Closed(reason);
        }
        let wanted = if !self.wants_write() {
            READ_INTEREST
        } else {
            READ_INTEREST | Interest::WRITABLE
        };
        if wanted != self.interest {
            let token = self.token();
            if let Err(err) = ctx.registry.reregister(&mut self.stream, token, wanted) {
                log::warn!("{}: reregister failed: {err}", self.label);
                return Status::Closed(CloseReason::Error);
            }
            self.interest = wanted;
        }
        Status::Open { active, again }
    }
}

#[cfg(test)]
mod tests {
    /// Every connection costs this much while idle (plus its label, its
    /// deadline node and its ready-queue mark): keep it small.
    #[test]
    fn an_idle_connection_is_small() {
        let size = std::mem::size_of::<super::Connection>();
        eprintln!(
            "Connection: {size} bytes; LineBuffer {}; SendQueue {}; Stream {}",
            std::mem::size_of::<crate::proto::line::LineBuffer>(),
            std::mem::size_of::<crate::serve::send_queue::SendQueue>(),
            std::mem::size_of::<crate::net::stream::Stream>()
        );
        // 80 in a release build; 8 more in a debug build, where mio's
        // sockets keep a debug-only field.
        assert!(size <= 88, "{size} bytes");
    }

    /// The guide (chapter 6) and the README state the size of a
    /// `Connection`; a change to the struct must change them too.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_docs_state_the_connection_size() {
        // As built for use: a debug build adds mio's check that a socket
        // is registered with one `Poll` only (8 bytes in its `IoSource`).
        let debug_only = if cfg!(debug_assertions) { 8 } else { 0 };
        let size = std::mem::size_of::<super::Connection>() - debug_only;
        let root = env!("CARGO_MANIFEST_DIR");
        for (file, claim) in [
            (
                "docs/select-to-mio.md",
                format!("A `Connection` is {size} bytes on x86-64"),
            ),
            (
                "README.md",
                format!("an idle connection is {size} bytes of state"),
            ),
        ] {
            let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(text.contains(&claim), "{file} should say: {claim}");
        }
    }
}
