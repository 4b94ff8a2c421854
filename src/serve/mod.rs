//! `selectd serve`: the notes' server, every client at once.
//!
//! The notes' server is one loop: accept a client, `select()` on it until it
//! goes quiet, print what it sends, close it, accept the next. Here the
//! process (this module: bind, signals, stop, published counters) is kept
//! apart from the event loop that one thread runs, as redis keeps `ae.c`
//! apart from `server.c`: the loop owns one `Poll` and everything that poll
//! serves; the process owns what outlives any one loop.
//!
//! Follow one connection by reading, in order:
//!
//! 1. `listen`: `socket`, `SO_REUSEADDR`, `bind`, `listen`, before the loop
//!    starts; `slots` gives each listener its token.
//! 2. `event_loop`: one `poll` for every socket; its time-out is the nearest
//!    deadline (`deadline`). A listener's token means clients to accept.
//! 3. `accept`: the notes' `accept()`, a bounded number per turn, refusing
//!    clients beyond `--max-conns`.
//! 4. `connection`: one client's life: read until the kernel has no more,
//!    frame lines (`proto`), print (`output`), reply through its
//!    `send_queue`, obey commands.
//! 5. `ready`: a connection that spent its read budget with data left is
//!    served again next turn, once.
//! 6. `close`: why it ended, printed, logged and counted.
//!
//! Beside that path: `datagram` serves UDP; `stats` counts; `trace` narrates
//! each turn for `--trace-loop`; `config` and `error` hold the settings and
//! the failures that stop the server.

pub(crate) mod activation;
pub(crate) mod close;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod datagram;
pub(crate) mod deadline;
pub(crate) mod error;
pub(crate) mod event_loop;
pub(crate) mod listen;
pub(crate) mod notify;
pub(crate) mod output;
pub(crate) mod proxy;
pub(crate) mod slots;
pub(crate) mod stats;
pub(crate) mod trace;

pub use close::CloseReason;
pub use config::Config;
pub use error::Error;
pub use event_loop::{Server, ServerHandle};
pub use listen::BoundAddr;
pub use output::{Format, MemorySink};
pub use stats::Counters;
