//! selectd: the `select()` line server from the socket notes, done right.
//!
//! The notes' server accepts one client, waits in
//! `select([conn], [], [], 5)`, prints what it sends, and closes it on
//! `disconnect`, on a 5 s silence, or stops on `stop`. selectd does the same
//! job for every client at once, on one thread, with one `mio::Poll`.
//!
//! New to non-blocking I/O? Read `docs/select-to-mio.md` in the repository:
//! it takes every call in the notes and shows where selectd makes it, and
//! why. `examples/blocking_server.rs` and `examples/blocking_client.rs` are
//! the notes' programs ported to blocking `std::net`: the "before" picture.
//!
//! # Layout
//!
//! One crate, three programs and what they share:
//!
//! | room | what it owns |
//! |------|--------------|
//! | [`serve`] | `selectd serve`: the process (bind, signals, stop, counters) apart from the event loop one thread runs (its `Poll`, connections, deadlines, ready queue) |
//! | [`send`] | `selectd send`: the notes' client, reading and writing at once |
//! | [`bench`](mod@bench) | `selectd bench`: the load generator, a mio reactor per thread |
//! | [`proto`] | the line protocol, apart from sockets: framing, commands, escaping |
//! | [`net`] | what all three share about the network: addresses, units, streams, fd limits |
//! | [`cli`] | every flag, parsed into the validated configs the rooms run with |
//!
//! ```text
//!            clients (TCP, Unix, UDP)
//!                 │  bytes
//!   ┌─────────────▼──────────────────────────────────────────────┐
//!   │ kernel: sockets, receive/send queues, listen backlog       │
//!   └─────────────┬──────────────────────────────────────────────┘
//!                 │  readiness ("token 7 is readable")
//!   ┌─────────────▼──────────────────┐
//!   │ serve: the event loop          │◄── deadlines: poll's time-out
//!   │  poll → dispatch by token      │◄── ready queue: who is served again
//!   └──┬──────────────────────────┬──┘
//!      │ listener token           │ connection token
//!   ┌──▼─────────┐     ┌──────────▼──────────────────────────────┐
//!   │ accept()   │────►│ a connection: one client's life         │
//!   └────────────┘ new │  read → proto (frame, obey, escape)     │
//!                      │  → output (print), send queue (reply)   │
//!                      └─────────────────────────────────────────┘
//! ```
//!
//! Three rules hold the design together:
//!
//! 1. **Nothing blocks.** Every socket is non-blocking; the only place the
//!    thread sleeps is `poll`, and it sleeps until *any* socket is ready or
//!    the nearest deadline passes. That is why one thread serves thousands
//!    of clients: a client with nothing to say costs no thread, no stack and
//!    no system call, only its entry in the kernel's interest list.
//! 2. **Readiness is edge-triggered.** mio reports a change once, so every
//!    handler works until the kernel says `WouldBlock` (or proves the queue
//!    empty by a short read, where the kernel guarantees that), and whatever
//!    it leaves behind (a spent read budget, output not yet sent) it
//!    remembers itself. The rules are written once, in the event loop's
//!    module docs.
//! 3. **One exit.** Every way a connection ends (EOF, `disconnect`, idle,
//!    reset, `stop`, a line too long) goes through one `close`, with a
//!    [`CloseReason`], printed, logged and counted.
//!
//! To follow one connection from `accept` to `close`, start at [`serve`]'s
//! module docs: they list the files in the order a connection meets them.
//!
//! # The notes, call by call
//!
//! | notes (Python)                     | selectd                                          |
//! |------------------------------------|--------------------------------------------------|
//! | `socket()`, `setsockopt(SO_REUSEADDR)`, `bind()`, `listen(5)` | `serve::listen` (backlog 1024) |
//! | `accept()`                         | `serve::accept`, a bounded number per turn       |
//! | `select([conn], [], [], TIMEOUT)`  | one `poll` for all sockets; time-out from the nearest deadline |
//! | `recv(1024)`                       | a connection reads 64 KiB into a shared buffer, then [`LineBuffer`](proto::LineBuffer) frames it |
//! | `send()` / `sendall()`             | write now, queue the rest, wait for `WRITABLE`   |
//! | `shutdown(SHUT_WR)`                | a client's half-close is EOF: replies are flushed, then close |
//! | `setblocking(0)`                   | every socket, always (mio does it)               |
//! | `settimeout()`                     | no per-call time-outs: per-client idle deadlines |
//! | `close()`                          | one `close(reason)` per connection               |
//! | `except: pass`                     | [`Error`]: one line naming the culprit           |
//!
//! # Example
//!
//! A server on a port the kernel picks, echoing what a client sends; `stop`
//! ends it, and everything it would have printed is in the sink.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//! use selectd::{Config, MemorySink, Server};
//!
//! let mut config = Config::listening_on("127.0.0.1:0".parse()?);
//! config.echo = true;
//! let sink = MemorySink::new();
//! let server = Server::bind(config)?.with_output(sink.clone());
//! let addr = server.local_addrs()[0].to_string(); // tcp://127.0.0.1:PORT
//! let running = std::thread::spawn(move || server.run());
//!
//! let mut client = TcpStream::connect(addr.trim_start_matches("tcp://"))?;
//! client.set_read_timeout(Some(Duration::from_secs(10)))?;
//! client.write_all(b"merhaba\n")?;
//! let mut echoed = String::new();
//! BufReader::new(&client).read_line(&mut echoed)?;
//! assert_eq!(echoed, "merhaba\n");
//!
//! client.write_all(b"stop\n")?;
//! running.join().expect("server thread")?;
//! let printed = sink.contents();
//! assert!(printed.contains("] merhaba\n"), "{printed}");
//! assert!(printed.contains("] close: stop\n"), "{printed}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod cli;
mod failpoint;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
/// Internal types exposed only for `benches/micro.rs` (feature `internals`).
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::serve::deadline_list::DeadlineList;
}
pub mod net;
pub mod proto;
pub mod send;
pub mod serve;

pub use serve::{
    Activated, BoundAddr, CloseReason, Config, Counters, Error, Format, MemorySink, Server,
    ServerHandle, TrustedProxies, take_activated_sockets,
};
