//! One HTTP client of the metrics port: read a request, answer, repeat.
//!
//! A line client's life is read, frame, act; an HTTP client's is the same
//! with a request head for a line. What keeps its memory bounded is the
//! order of the steps in [`HttpClient::serve`]:
//!
//! 1. write what is owed; if the socket cannot take it all, wait for it to
//!    be writable, and read nothing meanwhile (a client that sends requests
//!    without reading the answers gets no more answered);
//! 2. answer the request at the head of what was received, if whole;
//! 3. only then read more, and at most [`MAX_HEAD`] bytes in all: a head
//!    that does not fit is refused (431), never buffered further.
//!
//! So a client holds at most one request head and one response, however
//! much it sends. The rules for time (5 s per request, keep-alive between
//! requests) are the server's, which keeps the deadlines.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::http::{self, MAX_HEAD, Parsed, Request, Response, Status};

/// Requests answered per readiness event. A client pipelining thousands of
/// requests then waits for the next turn, like a line client over its read
/// budget, instead of holding the loop.
const REQUESTS_PER_EVENT: usize = 64;

/// What [`HttpClient::serve`] left the client doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Still connected; `busy` while a request is partly received or an
    /// answer partly written (the request clock runs), idle otherwise (the
    /// keep-alive clock runs). `answered` requests were answered just now.
    Open { busy: bool, answered: usize },
    /// The last answer is written and the connection is to end: shut it
    /// down gently, so that the answer is read before any reset.
    Finished,
    /// The client closed, reset, or failed: close at once.
    Gone,
}

/// What a client waits for when [`HttpClient::serve`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The next request's bytes.
    Readable,
    /// Room for the rest of an answer.
    Writable,
    /// Nothing: the request budget ran out with requests left. Writable
    /// interest, registered again, is reported at once, so the client is
    /// served again next turn.
    NextTurn,
}

/// How the server answers one request (what it reads to do so is its own).
pub(super) trait Answer {
    /// The response to `request`, written into `out`; `true` if the
    /// connection must close after it.
    fn answer(&mut self, request: &Request, out: &mut Vec<u8>) -> bool;
    /// Counts an answer sent without a request to answer (400, 431).
    fn refused(&mut self, status: Status);
}

/// One connection to the metrics port.
#[derive(Debug)]
pub(super) struct HttpClient {
    stream: TcpStream,
    peer: SocketAddr,
    token: Token,
    /// Received and not yet answered: at most [`MAX_HEAD`] bytes.
    received: Vec<u8>,
    /// Answers not yet written, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// Close once `out` is written (`Connection: close`, or an error).
    closing: bool,
    /// Registered for writability too (an answer is waiting for room, or
    /// the request budget ran out and the client must be served again).
    writable: bool,
}

impl HttpClient {
    /// A client just accepted, registered under `token`.
    pub fn new(
        mut stream: TcpStream,
        peer: SocketAddr,
        token: Token,
        registry: &Registry,
    ) -> io::Result<HttpClient> {
        // Answers go out whole in one write; Nagle's algorithm would only
        // hold back the tail of a large one until the client's delayed ACK.
        stream.set_nodelay(true)?;
        registry.register(&mut stream, token, Interest::READABLE)?;
        Ok(HttpClient {
            stream,
            peer,
            token,
            received: Vec::new(),
            out: Vec::new(),
            written: 0,
            closing: false,
            writable: false,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether a request is partly received or an answer partly written.
    pub fn is_busy(&self) -> bool {
        !self.received.is_empty() || self.written < self.out.len()
    }

    /// Serves the client after a readiness event: write, answer, read, in
    /// that order, until the socket would block or the budget is spent.
    pub fn serve(&mut self, answer: &mut impl Answer, registry: &Registry) -> Progress {
        let mut answered = 0;
        loop {
            // 1. What is owed goes first.
            match self.flush() {
                Ok(true) => {}
                Ok(false) => return self.wait(Wait::Writable, answered, registry),
                Err(_) => return Progress::Gone,
            }
            if self.closing {
                return Progress::Finished;
            }
            if answered == REQUESTS_PER_EVENT {
                return self.wait(Wait::NextTurn, answered, registry);
            }
            // 2. A whole request waiting? Answer it.
            match http::parse(&self.received) {
                Parsed::Request(request, used) => {
                    self.received.drain(..used);
                    self.closing = answer.answer(&request, &mut self.out);
                    answered += 1;
                    continue;
                }
                Parsed::Invalid(status) => {
                    log::debug!("metrics client {}: {}", self.peer, status.code());
                    answer.refused(status);
                    let body = match status {
                        Status::HeadTooLarge => "request head over 8 KiB\n",
                        _ => "bad request\n",
                    };
                    Response {
                        close: true,
                        ..Response::text(status, body)
                    }
                    .write_to(&mut self.out);
                    self.received.clear();
                    self.closing = true;
                    answered += 1;
                    continue;
                }
                Parsed::Partial => {}
            }
            // 3. Read more (there is room: a full buffer is never Partial).
            match self.read_more() {
                Ok(0) => return Progress::Gone,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return self.wait(Wait::Readable, answered, registry);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Gone,
            }
        }
    }

    /// Reads into the free room of the request buffer.
    fn read_more(&mut self) -> io::Result<usize> {
        let start = self.received.len();
        self.received.resize(MAX_HEAD, 0);
        let result = self.stream.read(&mut self.received[start..]);
        let read = *result.as_ref().unwrap_or(&0);
        self.received.truncate(start + read);
        result
    }

    /// Writes what is owed; `true` once all of it is written.
    fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(true)
    }

    /// Sets the interest for what the client waits for next.
    fn wait(&mut self, wait: Wait, answered: usize, registry: &Registry) -> Progress {
        let writable = wait != Wait::Readable;
        // Registering again is what re-arms an edge: with writable interest
        // on a socket that has room, the event comes at once.
        if writable != self.writable || wait == Wait::NextTurn {
            let interest = if writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut self.stream, self.token, interest)
                .is_err()
            {
                return Progress::Gone;
            }
            self.writable = writable;
        }
        Progress::Open {
            busy: self.is_busy(),
            answered,
        }
    }

    /// Takes the socket out of the poll, for closing or lingering.
    pub fn into_stream(mut self, registry: &Registry) -> TcpStream {
        let _ = registry.deregister(&mut self.stream);
        self.stream
    }
}
