//! selectd: the `select()` line server from the socket notes, done right.
#![deny(missing_docs)]

pub mod addr;
pub mod bench;
pub mod units;
