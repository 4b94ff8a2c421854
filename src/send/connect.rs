//! Resolving and connecting within one time budget: the notes'
//! `settimeout` followed by `connect`.
//!
//! Resolution runs on a helper thread, because `getaddrinfo` cannot be
//! cancelled: when it is too slow we stop waiting and leave the thread to
//! finish on its own. Each resolved address is then tried in turn with what
//! is left of the budget.
//!
//! A Unix socket whose listen backlog is full does not answer a
//! non-blocking `connect` with "in progress" but with `EAGAIN`, and there is
//! nothing to poll for: the kernel wakes only a *blocking* connect when room
//! appears. So a Unix connect blocks, bounded by a send time-out
//! (`SO_SNDTIMEO`, which Linux applies to that wait), and an `EAGAIN` at
//! the end means the budget ran out, exactly like a TCP connect that
//! nobody answers.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::error::SendError;
use crate::net::addr::Address;
use crate::net::stream::Stream;

/// The address as people write it, without the `tcp://` of [`Address`]'s
/// `Display`: `127.0.0.1:9`, `[::1]:9`, `unix:/run/s.sock`.
pub(super) fn spell(addr: &Address) -> String {
    match addr {
        Address::Tcp { host, port } | Address::Udp { host, port } if host.contains(':') => {
            format!("[{host}]:{port}")
        }
        Address::Tcp { host, port } | Address::Udp { host, port } => format!("{host}:{port}"),
        Address::Unix(_) | Address::Tls { .. } => addr.to_string(),
    }
}

/// Resolves and connects before `deadline`: the notes' `settimeout` and
/// `connect`. Each resolved address is tried in turn; the last failure wins.
pub(super) fn connect(
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
        let attempt = Socket::new(target.domain(), Type::STREAM, None).and_then(|socket| {
            if target.domain() == Domain::UNIX {
                connect_unix(&socket, target, remaining)?;
            } else {
                socket.connect_timeout(target, remaining)?;
            }
            Ok(socket)
        });
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

/// A blocking connect to a Unix socket that gives up after `limit`, as
/// the module docs explain. A full backlog that stays full ends in
/// `TimedOut`.
fn connect_unix(socket: &Socket, target: &SockAddr, limit: Duration) -> io::Result<()> {
    // A zero time-out would mean "wait for ever": never ask for less than 1 ms.
    socket.set_write_timeout(Some(limit.max(Duration::from_millis(1))))?;
    match socket.connect(target) {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "listen backlog full",
        )),
        other => other,
    }
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
pub(super) fn into_stream(socket: Socket, addr: &Address) -> io::Result<Stream> {
    socket.set_nonblocking(true)?;
    Ok(match addr {
        Address::Unix(_) => Stream::Unix(mio::net::UnixStream::from_std(socket.into())),
        _ => Stream::Tcp(mio::net::TcpStream::from_std(socket.into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_spelled_as_typed() {
        let spelled = |text: &str| spell(&text.parse().expect("parses"));
        assert_eq!(spelled("tcp://127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(spelled("[::1]:9"), "[::1]:9");
        assert_eq!(spelled("unix:/tmp/s"), "unix:/tmp/s");
    }
}
