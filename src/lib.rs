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
//! # Architecture
//!
//! ```text
//!            clients (TCP, Unix)
//!                 │  bytes
//!   ┌─────────────▼──────────────────────────────────────────────┐
//!   │ kernel: sockets, receive/send queues, listen backlog       │
//!   └─────────────┬──────────────────────────────────────────────┘
//!                 │  readiness ("token 7 is readable")
//!   ┌─────────────▼──────────────┐
//!   │ reactor.rs: Server::run    │◄── deadline.rs: poll's time-out
//!   │  poll → dispatch by token  │◄── slots.rs: token → who
//!   └──┬──────────────────────┬──┘
//!      │ listener token       │ connection token
//!   ┌──▼─────────┐     ┌──────▼───────────────────────────────────┐
//!   │ listen.rs  │     │ connection.rs: one client's life         │
//!   │ accept()   │────►│  read until WouldBlock → line.rs (frame) │
//!   └────────────┘ new │  → command.rs (obey) or output.rs (print)│
//!                      │  reply now, queue the rest for WRITABLE  │
//!                      └──────────────────────────────────────────┘
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
//!    handler works until the kernel says `WouldBlock`, and whatever it
//!    leaves behind (a spent read budget, output not yet sent) it remembers
//!    itself. The rules are written once, in [`reactor`]'s module docs.
//! 3. **One exit.** Every way a connection ends (EOF, `disconnect`, idle,
//!    reset, `stop`, a line too long) goes through `Connection::close`
//!    with a [`CloseReason`](connection::CloseReason), printed and logged.
//!
//! # One connection, module by module
//!
//! Follow a client from `accept` to `close` by reading, in order:
//!
//! 1. [`listen`]: before the loop starts, `socket`, `SO_REUSEADDR`, `bind`
//!    and `listen` ([`Listener::bind_all`](listen::Listener::bind_all));
//!    [`addr`] parses what `--listen` names. [`slots`] gives the listener a
//!    token.
//! 2. [`reactor`]: [`Server::run`] wakes with the listener's token and
//!    accepts until `WouldBlock` ([`Listener::accept`](listen::Listener::accept),
//!    which also returns a [`Peer`](stream::Peer) from [`stream`]). The new
//!    socket gets its slab key as token, and an idle deadline in [`deadline`]
//!    ([`DeadlineList::touch`](deadline::DeadlineList::touch)).
//! 3. [`connection`]: `Connection::new` registers it for `READABLE` and
//!    prints `open`. On each readable event, `Connection::on_readable` reads
//!    into the reactor's shared 64 KiB buffer until `WouldBlock`.
//! 4. [`line`](mod@line): [`LineBuffer::feed`](line::LineBuffer::feed) cuts
//!    the bytes into lines, keeping a partial line for the next read.
//!    [`command`]: [`Command::parse`](command::Command::parse) says whether a
//!    line is `disconnect`, `stop`, or text.
//! 5. [`output`]: text is escaped and printed in the chosen
//!    [`Format`]; with `--echo` it is also written back. What the socket
//!    does not take waits in the connection, which then asks for `WRITABLE`
//!    (`Connection::on_writable` sends it).
//! 6. Back in the reactor: activity moves the idle deadline. Silence until
//!    the deadline ([`DeadlineList::pop_expired`](deadline::DeadlineList::pop_expired)),
//!    EOF, `disconnect` or `stop` lead to `Connection::close`, which
//!    deregisters, prints the reason and drops the socket.
//!
//! Beside that path: [`datagram`] serves UDP (each datagram read whole with
//! its sender, no connection); [`stats`] counts what happened; [`limits`]
//! derives `--max-conns` from the file descriptor limit; [`trace`] narrates
//! each turn for `--trace-loop`. [`client`] is `selectd send`, the notes'
//! sample client, reading and writing at once so any amount of input goes
//! through; [`bench`](mod@bench) is `selectd bench`, the load generator, a
//! mio reactor too. [`config`], [`cli`], [`units`] and [`error`] hold the settings,
//! the flags that make them, and the errors that stop the server; `fuzzing`
//! (hidden) holds the invariants the fuzzer and its saved corpus check on
//! framing, commands and escaping (see `docs/fuzzing.md`).
//!
//! # The notes, call by call
//!
//! | notes (Python)                     | selectd                                          |
//! |------------------------------------|--------------------------------------------------|
//! | `socket()`, `setsockopt(SO_REUSEADDR)`, `bind()`, `listen(5)` | [`listen`] (backlog 1024)  |
//! | `accept()`                         | [`reactor`], until `WouldBlock`                  |
//! | `select([conn], [], [], TIMEOUT)`  | one `poll` for all sockets; time-out from [`deadline`] |
//! | `recv(1024)`                       | [`connection`] reads 64 KiB into a shared buffer, then [`line`](mod@line) frames it |
//! | `send()` / `sendall()`             | write now, queue the rest, wait for `WRITABLE`   |
//! | `shutdown(SHUT_WR)`                | a client's half-close is EOF: replies are flushed, then close |
//! | `setblocking(0)`                   | every socket, always (mio does it)               |
//! | `settimeout()`                     | no per-call time-outs: per-client idle deadlines |
//! | `close()`                          | `Connection::close`, the single exit             |
//! | `except: pass`                     | [`error`]: one line naming the culprit           |
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
//! use selectd::{Config, Server, output::MemorySink};
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

pub mod addr;
pub mod bench;
pub mod cli;
pub mod client;
pub mod command;
pub mod config;
pub mod connection;
pub mod datagram;
pub mod deadline;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod line;
pub mod listen;
pub mod output;
pub mod reactor;
pub mod slots;
pub mod stats;
pub mod stream;
pub mod trace;
pub mod units;

pub use config::Config;
pub use error::Error;
pub use output::Format;
pub use reactor::{Server, ServerHandle};
pub use stats::Counters;
