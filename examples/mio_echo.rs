//! The near-limit reference for `benches/compare`: a minimal mio echo server.
//!
//! One thread, one `Poll`, no line framing: whatever bytes arrive are written
//! straight back. selectd does strictly more work per byte (find the `\n`,
//! frame, act), so this bounds what a single-threaded mio server can reach on
//! the machine it runs on.
//!
//! With `--threads N`, N such loops on N threads, each with its own listener
//! on the same port (`SO_REUSEPORT`, so the kernel spreads connections):
//! the shared-nothing reference for `benches/scale`.
//!
//! ```text
//! cargo run --release --example mio_echo -- --listen 127.0.0.1:0 [--threads N]
//! ```
//! prints `listening on tcp://127.0.0.1:PORT` on stderr once it accepts.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token; connections use their slab key.
const LISTENER: Token = Token(usize::MAX);

/// Bytes waiting to go back before we stop reading from that client: a peer
/// that sends but never reads must not grow our memory without bound.
const MAX_PENDING: usize = 1 << 20;

struct Client {
    stream: TcpStream,
    /// Echo bytes the socket did not take yet.
    pending: Vec<u8>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// `--listen ADDR` (default `127.0.0.1:0`) and `--threads N` (default 1).
fn args() -> io::Result<(SocketAddr, usize)> {
    let usage = || {
        io::Error::new(
            ErrorKind::InvalidInput,
            "usage: mio_echo [--listen ADDR] [--threads N]",
        )
    };
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--listen" => addr = value.parse().map_err(|_| usage())?,
            "--threads" => threads = value.parse().ok().filter(|&n| n > 0).ok_or_else(usage)?,
            _ => return Err(usage()),
        }
    }
    Ok((addr, threads))
}

/// A listener on `addr` that other threads may bind too (`SO_REUSEPORT`).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn run() -> io::Result<()> {
    let (addr, threads) = args()?;
    let first = bind(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(bind(addr)?);
    }
    eprintln!("listening on tcp://{addr}");
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| std::thread::spawn(move || serve_loop(listener)))
        .collect();
    for handle in loops {
        handle
            .join()
            .map_err(|_| io::Error::other("a loop panicked"))??;
    }
    Ok(())
}

/// One thread's loop: its own `Poll`, listener and clients.
fn serve_loop(mut listener: TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;

    let mut clients: Slab<Client> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&poll, &listener, &mut clients)?;
                continue;
            }
            let key = event.token().0;
            // A client closed earlier in this batch may still have an event here.
            let Some(client) = clients.get_mut(key) else {
                continue;
            };
            if !serve(client, &mut scratch) {
                let mut client = clients.remove(key);
                let _ = poll.registry().deregister(&mut client.stream);
            }
        }
    }
}

fn accept_all(poll: &Poll, listener: &TcpListener, clients: &mut Slab<Client>) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nodelay(true)?;
                let entry = clients.vacant_entry();
                // Registered once, edge-triggered, for both directions.
                poll.registry().register(
                    &mut stream,
                    Token(entry.key()),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                entry.insert(Client {
                    stream,
                    pending: Vec::new(),
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Out of descriptors and the like: keep serving those we have.
            Err(e) => {
                eprintln!("accept: {e}");
                return Ok(());
            }
        }
    }
}

/// Flushes, then reads and echoes until `WouldBlock`; `false` once the client is gone.
fn serve(client: &mut Client, scratch: &mut [u8]) -> bool {
    if !flush(client) {
        return false;
    }
    while client.pending.len() < MAX_PENDING {
        match client.stream.read(scratch) {
            Ok(0) => return false,
            Ok(n) => {
                client.pending.extend_from_slice(&scratch[..n]);
                if !flush(client) {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Writes pending bytes until done or `WouldBlock`; `false` on a dead socket.
fn flush(client: &mut Client) -> bool {
    let mut done = 0;
    while done < client.pending.len() {
        match client.stream.write(&client.pending[done..]) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    client.pending.drain(..done);
    true
}
