//! Fault injection, for tests only.
//!
//! A server must fail loudly when one of its parts dies: a loop that panics,
//! an output writer that exits, a write that keeps failing with `EIO`. Such
//! faults are rare by nature, so the tests cause them on purpose, at named
//! points, with the [`fail`](https://docs.rs/fail) crate. With the
//! `failpoints` feature off (every normal build) a point compiles to nothing.
//!
//! The points, by name:
//!
//! | name | where | what a test makes it do |
//! |------|-------|-------------------------|
//! | `loop-N-turn` | loop N (from 1), after each `poll` | `panic(...)`: the loop panics; `return`: its `poll` fails |
//! | `client-line` | a client's line `failpoint`, as it is acted on | `panic(...)`: the loop serving that client panics |
//!
//! The `selectd` binary reads `FAILPOINTS` (`client-line=panic(boom)`) in
//! such builds.

/// `failpoint!("name")` runs the configured action (panic, sleep, ...);
/// `failpoint!("name", |value| expr)` returns `expr` from the enclosing
/// function when the point is configured to `return(value)`.
macro_rules! failpoint {
    ($($arg:tt)*) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($($arg)*);
    };
}

pub(crate) use failpoint;
