//! `selectd send`: the notes' sample client, done right.
//!
//! The notes' client is `settimeout(20)`, `connect`, `sendall`,
//! `shutdown(1)`, then `recv` until EOF. That order is only safe for a
//! request small enough to fit in the socket buffers: the client does not
//! read while it sends, so an echo server that answers every byte fills our
//! receive buffer, stops reading, fills its own, and both ends wait for ever.
//! This client sends and receives in the same loop, so any amount of input
//! goes through.
//!
//! # Layout
//!
//! | file | what it owns |
//! |------|--------------|
//! | `config` | a checked command: address, payload, time-out; `--data` escapes, the `--http` request |
//! | `connect` | resolution and connect within one time budget |
//! | `session` | the loop: receive, send, wait for progress |
//! | `stdin` | the thread that reads standard input, and why it is a thread |
//! | `error` | the notes' exceptions as variants, each with an exit code |
//!
//! # Time-outs
//!
//! `--timeout` is the notes' `settimeout`, applied twice: resolution and
//! connect share one budget, and afterwards the same duration bounds every
//! wait for progress.
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

use std::io::{self, Write};
use std::time::Instant;

mod config;
mod connect;
mod error;
mod session;
mod stdin;
#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "tls")]
pub use config::SendTls;
pub use config::{Payload, SendConfig, http_request, unescape};
pub use error::SendError;

use connect::{connect, into_stream, spell};
use session::{Session, WRITE_STDOUT};

/// Runs `selectd send` with a checked config: connects, and streams standard
/// input (or the fixed payload) out and everything received to standard output.
pub fn run(config: &SendConfig) -> Result<(), SendError> {
    let stdout = io::stdout();
    match send(config, &mut stdout.lock()) {
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
/// let config = SendConfig::new(addr, Payload::Bytes(b"ping\n".to_vec()), Duration::from_secs(20), true)?;
/// let mut out = Vec::new();
/// send(&config, &mut out)?;
/// assert_eq!(out, b"ping\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send(config: &SendConfig, out: &mut dyn Write) -> Result<(), SendError> {
    // Fields are public, so a caller may have built one without `new`.
    config.check()?;
    let name = spell(&config.addr);
    let timeout = config.timeout.min(crate::net::units::MAX_DURATION);
    let socket = connect(&config.addr, &name, Instant::now() + timeout, timeout)?;
    let stream = into_stream(socket, &config.addr).map_err(|source| SendError::Socket {
        addr: name.clone(),
        doing: "connect to",
        source,
    })?;
    log::info!("connected to {name}");
    #[cfg(feature = "tls")]
    let stream = tls::start(stream, config, &name)?;
    Session::new(stream, name, timeout, config)?.run(out)
}
