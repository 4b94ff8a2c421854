//! The line protocol, apart from any socket: how bytes become lines, what a
//! line means, and how a line is made safe to print.
//!
//! The notes' server treats each `recv(1024)` as one message and compares it
//! with `'disconnect\r\n'`; that breaks as soon as a line is split across
//! reads or two lines arrive in one. Here framing is a pure function of the
//! bytes ([`LineBuffer`]), checked by property tests and a fuzzer, and the
//! server, the client and the load generator all use it.

pub mod command;
pub mod escape;
pub mod line;

pub use escape::{escape_into, write_escaped};
pub use line::{Line, LineBuffer, LineTooLong};
