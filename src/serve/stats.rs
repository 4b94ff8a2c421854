//! Counters: what the server has done, for operators and tests.
//!
//! The reactor owns one [`Counters`] and bumps plain integers on its own
//! thread (no atomics on the hot path). Once per loop turn, before it sleeps,
//! it publishes a copy to a shared slot, which a
//! [`ServerHandle`](crate::ServerHandle) reads from any thread. The same
//! counters are logged every `--stats DUR` and sent to a local client that
//! says `stats`, as one line of `key=value` pairs, and served to Prometheus
//! by `--metrics` (with what only a scraper wants: how long each turn of the
//! loop took, how often it woke).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::serve::close::CloseReason;

/// Everything counted since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted (and served).
    pub accepted: u64,
    /// Connections refused because `--max-conns` were open.
    pub refused_full: u64,
    /// Connections open right now.
    pub open: u64,
    /// Connections closed, by reason (indexed by [`CloseReason::index`]).
    pub closed: [u64; CloseReason::ALL.len()],
    /// Bytes read from clients (streams and datagrams).
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Lines received (printed or commands).
    pub lines: u64,
    /// Socket errors: failed reads and writes (resets included), failed accepts.
    pub errors: u64,
    /// UDP datagrams received.
    pub datagrams: u64,
    /// UDP echo replies dropped because the send buffer was full.
    pub datagram_replies_dropped: u64,
    /// Client lines not printed because the output was full
    /// (`--output-full drop`).
    pub lines_dropped: u64,
    /// Connection events (`open`, `close`) not printed because the output
    /// was full (`--output-full drop`).
    pub events_dropped: u64,
    /// Times `poll` returned (an event, a deadline, or a signal).
    pub wakeups: u64,
    /// How long each turn of the loop took, from `poll` returning to the
    /// next `poll`: the lag every client of the loop waits through.
    pub turns: TurnHistogram,
    /// Loops not reading from clients right now because the output is full
    /// (0 or 1 for one loop; summed, how many loops).
    pub reading_paused: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed or did not finish in time.
    pub tls_handshake_failures: u64,
}

impl Counters {
    /// Connections closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// Connections closed for `reason`.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// The counts of several loops, added up.
    pub(crate) fn sum(each: &[Counters]) -> Counters {
        let mut total = Counters::default();
        for counters in each {
            total.add(counters);
        }
        total
    }

    /// Adds `other`'s counts to these (the loops of one server, summed).
    pub(crate) fn add(&mut self, other: &Counters) {
        let Counters {
            accepted,
            refused_full,
            open,
            closed,
            bytes_in,
            bytes_out,
            lines,
            errors,
            datagrams,
            datagram_replies_dropped,
            lines_dropped,
            events_dropped,
            wakeups,
            turns,
            reading_paused,
            tls_handshakes,
            tls_handshake_failures,
        } = *other;
        self.accepted += accepted;
        self.refused_full += refused_full;
        self.open += open;
        for (sum, count) in self.closed.iter_mut().zip(closed) {
            *sum += count;
        }
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.lines += lines;
        self.errors += errors;
        self.datagrams += datagrams;
        self.datagram_replies_dropped += datagram_replies_dropped;
        self.lines_dropped += lines_dropped;
        self.events_dropped += events_dropped;
        self.wakeups += wakeups;
        self.turns.add(&turns);
        self.reading_paused += reading_paused;
        self.tls_handshakes += tls_handshakes;
        self.tls_handshake_failures += tls_handshake_failures;
    }

    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closed[reason.index()] += 1;
        self.open = self.open.saturating_sub(1);
    }
}

impl fmt::Display for Counters {
    /// One line: `accepted=3 open=1 refused_full=0 closed=2 closed_eof=1 ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} open={} refused_full={} closed={}",
            self.accepted,
            self.open,
            self.refused_full,
            self.closed_total()
        )?;
        for reason in CloseReason::ALL {
            write!(
                f,
                " closed_{}={}",
                reason.as_str().replace('-', "_"),
                self.closed_for(reason)
            )?;
        }
        write!(
            f,
            " bytes_in={} bytes_out={} lines={} errors={} datagrams={} datagram_replies_dropped={} \
             lines_dropped={} events_dropped={} tls_handshakes={} tls_handshake_failures={}",
            self.bytes_in,
            self.bytes_out,
            self.lines,
            self.errors,
            self.datagrams,
            self.datagram_replies_dropped,
            self.lines_dropped,
            self.events_dropped,
            self.tls_handshakes,
            self.tls_handshake_failures
        )
    }
}

/// Turn durations, counted in fixed buckets (a Prometheus histogram).
///
/// The loop records one sample per turn with two integer operations, on its
/// own thread; the buckets are not cumulative here (the exposition adds them
/// up). The bounds run from 10 µs, a turn that served a client or two, to
/// 1 s, a loop that every client would notice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnHistogram {
    /// Turns per bucket: `buckets[i]` counts turns longer than the bound
    /// before it and at most [`TURN_BOUNDS_NANOS`]`[i]`; the last counts the
    /// longer ones.
    pub buckets: [u64; TURN_BOUNDS_NANOS.len() + 1],
    /// All turns' durations, added up, in nanoseconds.
    pub sum_nanos: u64,
}

/// The upper bounds of [`TurnHistogram`]'s buckets, in nanoseconds.
pub const TURN_BOUNDS_NANOS: [u64; 14] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

impl TurnHistogram {
    /// Counts one turn that took `took`.
    pub fn record(&mut self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = TURN_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket] += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
    }

    /// Turns counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, other: &TurnHistogram) {
        for (sum, count) in self.buckets.iter_mut().zip(other.buckets) {
            *sum += count;
        }
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
    }
}

/// Prints the counters for `--stats`: the user asked for them, so they go
/// to stderr whatever the log filter (`RUST_LOG`) says, in the log's own
/// format (`[2026-11-29T16:42:27Z INFO  selectd::stats] accepted=...`) and
/// through the same non-blocking stderr queue as log records. Written here,
/// not by the logger, so the library needs no logger implementation.
pub(crate) fn report(counters: &impl fmt::Display) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    crate::serve::output::diagnostics::line(format_args!(
        "[{} INFO  selectd::stats] {counters}",
        Rfc3339(now)
    ));
}

/// Seconds since the Unix epoch, shown as `2026-11-29T16:42:27Z` (UTC).
struct Rfc3339(u64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, secs) = (self.0 / 86_400, self.0 % 86_400);
        // Days to a civil date (Howard Hinnant's `civil_from_days`).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// The published copy, shared with handles.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedCounters(Arc<Mutex<Counters>>);

impl SharedCounters {
    pub(crate) fn publish(&self, counters: &Counters) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = *counters;
    }

    pub(crate) fn snapshot(&self) -> Counters {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Rfc3339(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(Rfc3339(1_795_969_347).to_string(), "2026-11-29T16:22:27Z");
    }

    #[test]
    fn turns_fall_in_the_bucket_of_their_upper_bound() {
        let mut turns = TurnHistogram::default();
        turns.record(Duration::from_nanos(1));
        turns.record(Duration::from_micros(10));
        turns.record(Duration::from_micros(11));
        turns.record(Duration::from_secs(3));
        assert_eq!(turns.buckets[0], 2, "up to and including 10 µs");
        assert_eq!(turns.buckets[1], 1);
        assert_eq!(turns.buckets[TURN_BOUNDS_NANOS.len()], 1, "beyond 1 s");
        assert_eq!(turns.count(), 4);
        assert_eq!(turns.sum_nanos, 3_000_021_001);
    }

    #[test]
    fn one_line_of_pairs() {
        let mut counters = Counters {
            accepted: 2,
            open: 2,
            ..Counters::default()
        };
        counters.count_close(CloseReason::LineTooLong);
        let text = counters.to_string();
        assert!(!text.contains('\n'));
        assert!(text.starts_with("accepted=2 open=1 refused_full=0 closed=1 closed_eof=0"));
        assert!(text.contains(" closed_line_too_long=1 "), "{text}");
        assert!(
            text.contains(" datagram_replies_dropped=0 lines_dropped=0 events_dropped=0 "),
            "{text}"
        );
        assert!(
            text.ends_with(" tls_handshakes=0 tls_handshake_failures=0"),
            "{text}"
        );
    }
}
