//! Faults injected on purpose (`--features failpoints`): whatever part of
//! the server dies, the server as a whole stops, says why, and fails.
#![cfg(feature = "failpoints")]
