//! A TLS session over a non-blocking TCP socket, fed by readiness.
//!
//! A blocking TLS library hides the handshake inside `read` and `write`.
//! Over a non-blocking socket it cannot: a TLS session is a state machine
//! of its own between the socket and the program, and readiness of the
//! socket says nothing directly about plaintext:
//!
//! - **A readable socket may yield no plaintext.** The bytes may be a
//!   handshake message, a session ticket, a key update or half a record.
//!   So `read` feeds what the socket has to rustls (`read_tls`), lets it
//!   process the records (`process_new_packets`), and returns plaintext
//!   only if some came out; otherwise it goes on reading until the socket
//!   says `WouldBlock`, and only then says `WouldBlock` itself, as the
//!   edge-triggered rules ask.
//! - **Reading may need a write.** Handshake replies, a key update's
//!   answer and alerts are produced while reading; they are written at
//!   once, and what the socket does not take stays in rustls
//!   ([`wants_write`](TlsStream::wants_write)): the owner must then ask for
//!   `WRITABLE` even when it has nothing of its own to send.
//! - **A write may need the last one to finish.** Plaintext is encrypted
//!   into rustls's buffer, then written. While earlier ciphertext still
//!   waits, a new `write` takes nothing (`WouldBlock`), so at most one
//!   write's worth of ciphertext (64 KiB) waits inside rustls beyond what
//!   the owner's own buffers count, and backpressure still holds.
//!
//! Before TLS begins, bytes may pass in clear: a PROXY header from a
//! trusted balancer precedes the handshake (HAProxy's `send-proxy-v2` in
//! TCP mode). Such a session starts in that state; its owner takes the
//! header and hands what followed it to [`begin`](TlsStream::begin).
//!
//! The same type serves `selectd serve` (a server session) and `send` and
//! `bench` (client sessions): rustls's `Connection` is either.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// How far a handshake got in one call of [`TlsStream::handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The handshake is complete.
    pub done: bool,
    /// TLS bytes read and written in this call (for `--trace-loop`).
    pub read: usize,
    /// As `read`, written.
    pub written: usize,
}

/// A TCP socket with a TLS session on it.
pub struct TlsStream {
    socket: TcpStream,
    session: Connection,
    /// Bytes pass in clear until [`begin`](TlsStream::begin): a PROXY header
    /// comes first.
    cleartext: bool,
    /// The session failed (its alert, if any, was sent): nothing more is
    /// read or written through it.
    failed: bool,
    /// `close_notify` was queued (it is sent once).
    closed: bool,
}

impl TlsStream {
    /// A server session on an accepted socket; with `cleartext_first`,
    /// bytes pass in clear until [`begin`](TlsStream::begin).
    pub fn server(
        socket: TcpStream,
        config: Arc<ServerConfig>,
        cleartext_first: bool,
    ) -> io::Result<TlsStream> {
        let session = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream::new(socket, session.into(), cleartext_first))
    }

    /// A client session on a connecting or connected socket, for `name`
    /// (sent as SNI when it is a DNS name, and checked against the
    /// server's certificate).
    pub fn client(
        socket: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let session = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsStream::new(socket, session.into(), false))
    }

    fn new(socket: TcpStream, session: Connection, cleartext: bool) -> TlsStream {
        TlsStream {
            socket,
            session,
            cleartext,
            failed: false,
            closed: false,
        }
    }

    /// The TCP socket underneath.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Whether the handshake has yet to complete (or not even begun: bytes
    /// still pass in clear).
    pub fn is_handshaking(&self) -> bool {
        self.cleartext || self.session.is_handshaking()
    }

    /// Whether bytes still pass in clear (a PROXY header is due).
    pub fn is_cleartext(&self) -> bool {
        self.cleartext
    }

    /// Ends the clear prefix: TLS begins with `rest`, the bytes that
    /// followed it in the last read.
    pub fn begin(&mut self, mut rest: &[u8]) -> io::Result<()> {
        self.cleartext = false;
        while !rest.is_empty() {
            if self.session.read_tls(&mut rest)? == 0 {
                break;
            }
            self.process()?;
        }
        Ok(())
    }

    /// Drives the handshake as far as the socket allows: write what is
    /// owed, read what came, until it is complete or the socket would
    /// block. The handshake's last flight is sent before `done` is said.
    pub fn handshake(&mut self) -> io::Result<Handshake> {
        let mut progress = Handshake {
            done: false,
            read: 0,
            written: 0,
        };
        while self.session.is_handshaking() {
            progress.written += self.send_pending()?;
            if self.session.wants_write() {
                return Ok(progress); // The socket is full: wait for WRITABLE.
            }
            match self.session.read_tls(&mut self.socket) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    ));
                }
                Ok(n) => progress.read += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(progress),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            self.process()?;
        }
        progress.written += self.send_pending()?;
        progress.done = true;
        Ok(progress)
    }

    /// Whether ciphertext waits for the socket to take it: ask for
    /// `WRITABLE` then, whatever else is queued.
    pub fn wants_write(&self) -> bool {
        !self.failed && self.session.wants_write()
    }

    /// Writes the ciphertext that waits, as much as the socket takes;
    /// `WouldBlock` is no error (what is left waits for `WRITABLE`).
    pub fn send_pending(&mut self) -> io::Result<usize> {
        let mut written = 0;
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(written)
    }

    /// Says goodbye at the TLS layer (`close_notify`), once, as far as the
    /// socket takes it now: the peer then tells a clean end from a cut.
    pub fn close_notify(&mut self) {
        if self.failed || self.closed || self.cleartext {
            return;
        }
        self.closed = true;
        self.session.send_close_notify();
        let _ = self.send_pending();
    }

    /// `close_notify`, then the socket's own half-close (FIN).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.close_notify();
        self.socket.shutdown(std::net::Shutdown::Write)
    }

    /// The negotiated version and cipher suite: `TLSv1.3 TLS13_AES_256_GCM_SHA384`.
    pub fn describe(&self) -> String {
        let version = match self.session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "TLS".to_string(),
        };
        match self.session.negotiated_cipher_suite() {
            Some(suite) => format!("{version} {:?}", suite.suite()),
            None => version,
        }
    }

    /// The common name of the peer's certificate, if it sent one.
    pub fn peer_common_name(&self) -> Option<String> {
        let chain = self.session.peer_certificates()?;
        super::common_name(chain.first()?)
    }

    /// Lets rustls decrypt and act on what `read_tls` gave it. On a
    /// failure, the alert it queued is sent (best effort) and the session
    /// is finished.
    fn process(&mut self) -> io::Result<()> {
        if let Err(err) = self.session.process_new_packets() {
            let _ = self.send_pending();
            self.failed = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, err));
        }
        Ok(())
    }
}

impl Read for TlsStream {
    /// Plaintext, as described in the module docs: `Ok(0)` once the peer
    /// sent `close_notify`; an `UnexpectedEof` error if it closed the
    /// connection without one (the stream may have been cut short).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cleartext {
            return self.socket.read(buf);
        }
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS session failed",
            ));
        }
        let mut eof = false;
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock && !eof => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Err(err) => return Err(err),
            }
            // A client's first read may have to say hello first: nothing
            // comes back before the ClientHello leaves.
            self.send_pending()?;
            match self.session.read_tls(&mut self.socket) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: nothing more to decrypt until the next edge.
                Err(err) => return Err(err),
            }
            self.process()?;
            // A key update's answer, a session ticket: sent now if possible.
            self.send_pending()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.cleartext {
            return self.socket.write_vectored(bufs);
        }
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS session failed",
            ));
        }
        // What was encrypted before goes first; while it waits, nothing
        // more is taken (see the module docs).
        self.send_pending()?;
        if self.session.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.session.writer().write_vectored(bufs)?;
        if taken == 0 && bufs.iter().any(|buf| !buf.is_empty()) {
            // Before the handshake completes rustls holds plaintext up to
            // its limit; beyond that, wait as for a full socket.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_pending()?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending().map(drop)
    }
}

impl Source for TlsStream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.socket)
            .field("handshaking", &self.is_handshaking())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
