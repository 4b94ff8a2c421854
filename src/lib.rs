//! selectd: the `select()` line server from the socket notes, done right.
//!
//! # Layout
//!
//! - [`addr`]: addresses for every socket family, as typed on the command line.
//! - [`units`]: durations and sizes, as typed on the command line.
//! - [`client`]: `selectd send`, the notes' sample client: connect, send,
//!   half-close, print until EOF, while reading and writing at once.
#![deny(missing_docs)]

pub mod addr;
pub mod client;
pub mod units;
