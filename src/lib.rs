//! selectd: the `select()` line server from the socket notes, done right.
//!
//! The notes' server accepts one client, waits in
//! `select([conn], [], [], 5)`, prints what it sends, and closes it on
//! `disconnect`, on a 5 s silence, or stops on `stop`. selectd does the same
//! job for every client at once, on one thread, with one `mio::Poll`.
//!
//! # Layout
//!
//! Follow one connection from `accept` to `close` by reading, in order:
//!
//! - [`reactor`]: the loop. Waits in `poll` until the nearest deadline,
//!   dispatches each event by token, stops gracefully. Owns every socket.
//! - [`connection`]: one client's life (`new`, `on_readable`, `on_writable`,
//!   `on_stop`, `close`), its buffers and its backpressure.
//! - [`line`](mod@line): bytes to lines; pure, no I/O. [`command`]: what a line means.
//! - [`deadline`]: idle deadlines in O(1); the poll time-out comes from here.
//! - [`output`]: the `--format`s and terminal-safe escaping; one buffered sink.
//! - [`datagram`]: UDP, where each datagram is read whole with its sender.
//! - [`listen`] and [`stream`]: sockets of each family; [`addr`]: their
//!   addresses as written. [`slots`]: which token means what.
//! - [`config`], [`cli`], [`units`], [`error`]: settings, flags, errors.
//! - `fuzzing` (hidden): the invariants the fuzzer and its saved corpus
//!   check on framing, commands and escaping; see `docs/fuzzing.md`.
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
//! | `setblocking(0)`                   | every socket, always (mio does it)               |
//! | `close()`                          | `Connection::close`, the single exit             |
//! | `except: pass`                     | [`error`]: one line naming the culprit           |
#![deny(missing_docs)]

pub mod addr;
pub mod cli;
pub mod command;
pub mod config;
pub mod connection;
pub mod datagram;
pub mod deadline;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod line;
pub mod listen;
pub mod output;
pub mod reactor;
pub mod slots;
pub mod stream;
pub mod units;

pub use config::Config;
pub use error::Error;
pub use output::Format;
pub use reactor::{Server, ServerHandle};
