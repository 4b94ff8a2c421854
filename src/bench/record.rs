//! What a run measures, as each reactor collects it and as they add up.
//!
//! Three histograms (µs, 3 significant digits): the round trip measured
//! from when a line *should* have gone out (corrected), from when it did go
//! out (uncorrected), and, for churn, how long each `connect` took. In a
//! closed loop a line goes out the moment it should, so the first two are
//! the same. Failures that do not end the run (churn, idle) are counted by
//! kind, so a report says "refused 1200" rather than "errors 1200".

use std::io;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::BenchError;

/// Largest latency a histogram holds, in µs (one hour); longer ones are
/// clamped, which a benchmark of seconds never sees.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A new, empty latency histogram. The bounds are constant and valid, so
/// this never fails in practice; the error is still passed on, not unwrapped.
fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(BenchError::Histogram)
}

/// When a line should have gone out, and when it did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) intended: Instant,
    pub(crate) actual: Instant,
}

impl Sent {
    /// A line of the closed loop: it goes out when it should.
    pub(crate) fn now(now: Instant) -> Sent {
        Sent {
            intended: now,
            actual: now,
        }
    }
}

/// Why a connection (churn) or a connect (idle) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Nobody listens there (`ECONNREFUSED`, or a full Unix backlog).
    Refused,
    /// The server reset the connection.
    Reset,
    /// A connect or a reply took too long.
    Timeout,
    /// The server closed before the echo came back.
    Closed,
    /// No local address or port left (`EADDRNOTAVAIL`, `EMFILE`...).
    NoAddress,
    /// The echo differs from what was sent.
    Mismatch,
    /// No socket at that path (`unix:PATH` that does not exist, `ENOENT`,
    /// `ENOTDIR`): no server was ever there, which `refused` does not say.
    NotFound,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in the order the report lists them.
    pub(crate) const ALL: [ErrorKind; 8] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::NoAddress,
        ErrorKind::Mismatch,
        ErrorKind::NotFound,
        ErrorKind::Other,
    ];

    /// The report's name: a JSON key under `errors_by_kind`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::NoAddress => "no_address",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Other => "other",
        }
    }

    pub(crate) fn of(error: &io::Error) -> ErrorKind {
        use io::ErrorKind as K;
        match error.kind() {
            K::ConnectionRefused => ErrorKind::Refused,
            K::WouldBlock => ErrorKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => ErrorKind::Reset,
            K::TimedOut => ErrorKind::Timeout,
            K::AddrNotAvailable | K::AddrInUse => ErrorKind::NoAddress,
            K::UnexpectedEof => ErrorKind::Closed,
            K::NotFound | K::NotADirectory => ErrorKind::NotFound,
            _ if error.raw_os_error() == Some(libc::EMFILE) => ErrorKind::NoAddress,
            _ => ErrorKind::Other,
        }
    }
}

/// Failures counted by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ErrorKind::ALL.len()]);

impl ErrorCounts {
    pub(crate) fn add(&mut self, kind: ErrorKind) {
        self.0[kind as usize] += 1;
    }

    pub(crate) fn merge(&mut self, other: &ErrorCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(name, count)` for every kind, zeros included.
    pub fn by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ErrorKind::ALL
            .iter()
            .map(|&kind| (kind.name(), self.0[kind as usize]))
    }

    /// `refused 12, reset 1`: the kinds that happened, or `None`.
    pub fn summary(&self) -> Option<String> {
        let seen: Vec<String> = self
            .by_kind()
            .filter(|&(_, count)| count > 0)
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        (!seen.is_empty()).then(|| seen.join(", "))
    }
}

/// What one reactor measured, added to the shared total now and then.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// Round trips from the intended send time (the closed loop: the send time).
    pub(crate) corrected: Histogram<u64>,
    /// Round trips from the actual send time.
    pub(crate) uncorrected: Histogram<u64>,
    /// Churn: connect times.
    pub(crate) connect: Histogram<u64>,
    /// Failures that did not end the run.
    pub(crate) errors: ErrorCounts,
}

impl Measured {
    pub(crate) fn new() -> Result<Measured, BenchError> {
        Ok(Measured {
            corrected: new_histogram()?,
            uncorrected: new_histogram()?,
            connect: new_histogram()?,
            errors: ErrorCounts::default(),
        })
    }
}

fn micros(from: Instant, to: Instant) -> u64 {
    (to.saturating_duration_since(from).as_micros() as u64).max(1)
}

impl Measured {
    /// A reply completed at `now` for a line sent as `sent`.
    pub(crate) fn round_trip(&mut self, sent: Sent, now: Instant) {
        self.corrected.saturating_record(micros(sent.intended, now));
        self.uncorrected.saturating_record(micros(sent.actual, now));
    }

    /// `count` lines that were due at `intended` (no earlier) and had no
    /// reply yet at `end`: each waited at least that long. They were never
    /// sent, so only the corrected latencies count them.
    pub(crate) fn unanswered(&mut self, intended: Instant, end: Instant, count: u64) {
        self.corrected
            .saturating_record_n(micros(intended, end), count);
    }

    /// A connect started at `started` finished at `now`.
    pub(crate) fn connected(&mut self, started: Instant, now: Instant) {
        self.connect.saturating_record(micros(started, now));
    }

    /// Adds `other` into `self` and empties it.
    pub(crate) fn take_from(&mut self, other: &mut Measured) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        let _ = self.connect.add(&other.connect);
        self.errors.merge(&other.errors);
        other.corrected.reset();
        other.uncorrected.reset();
        other.connect.reset();
        other.errors = ErrorCounts::default();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.corrected.is_empty() && self.connect.is_empty() && self.errors.total() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_late_line_counts_its_wait_only_when_corrected() {
        let mut measured = Measured::new().unwrap();
        let intended = Instant::now();
        let sent = Sent {
            intended,
            actual: intended + Duration::from_millis(500),
        };
        measured.round_trip(sent, intended + Duration::from_millis(501));
        assert!(measured.corrected.max() >= 500_000);
        assert!(measured.uncorrected.max() < 2_000);
    }

    #[test]
    fn errors_merge_and_summarise_by_kind() {
        let mut a = ErrorCounts::default();
        a.add(ErrorKind::Refused);
        let mut b = ErrorCounts::default();
        b.add(ErrorKind::Refused);
        b.add(ErrorKind::Reset);
        a.merge(&b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.summary().as_deref(), Some("refused 2, reset 1"));
        assert_eq!(ErrorCounts::default().summary(), None);
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(ErrorKind::of(&refused), ErrorKind::Refused);
        let no_port = io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        assert_eq!(ErrorKind::of(&no_port), ErrorKind::NoAddress);
    }
}
